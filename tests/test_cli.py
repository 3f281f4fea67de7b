"""Exit codes and one-line errors of the command line (no traceback, nothing written)."""
import json
import subprocess
import sys

import nibabel as nib
import numpy as np

from bids_boldsr.cli.run import main
from conftest import make_bids


def _run(argv, capsys):
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err
    return code, err


def _bold(shape=(8, 8, 6, 5)):
    rng = np.random.default_rng(0)
    return nib.Nifti1Image(rng.normal(500, 20, shape).astype(np.float32), np.diag([3, 3, 3, 1.0]))


def test_missing_dataset_exit_66(tmp_path, capsys):
    code, err = _run([tmp_path / "nope", tmp_path / "out", "participant"], capsys)
    assert code == 66 and err.startswith("bids-boldsr: error:") and "does not exist" in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_output_inside_dataset_refused(tmp_path, capsys):
    ds = make_bids(tmp_path / "ds", _bold())
    before = sorted(p.relative_to(ds) for p in ds.rglob("*"))
    code, err = _run([ds, ds / "derivatives" / "x", "participant"], capsys)
    assert code == 64 and "never writes into bids_dir" in err
    assert sorted(p.relative_to(ds) for p in ds.rglob("*")) == before


def test_invalid_dataset_exit_16(tmp_path, capsys):
    ds = make_bids(tmp_path / "ds", _bold())
    (ds / "dataset_description.json").unlink()
    code, err = _run([ds, tmp_path / "out", "participant", "-w", tmp_path / "w"], capsys)
    assert code == 16 and "dataset_description.json is missing" in err


def test_unknown_participant_exit_18(tmp_path, capsys):
    ds = make_bids(tmp_path / "ds", _bold())
    code, err = _run([ds, tmp_path / "out", "participant", "--participant-label", "99",
                      "-w", tmp_path / "w"], capsys)
    assert code == 18 and "99 not found" in err


def test_task_filter_selects_nothing_exit_18(tmp_path, capsys):
    ds = make_bids(tmp_path / "ds", _bold())
    code, err = _run([ds, tmp_path / "out", "participant", "--task", "other", "-w", tmp_path / "w"],
                     capsys)
    assert code == 18 and "no BOLD runs match" in err


def test_3d_bold_is_bad_data_exit_65(tmp_path, capsys):
    ds = make_bids(tmp_path / "ds", nib.Nifti1Image(np.ones((8, 8, 6), np.float32), np.eye(4)))
    code, err = _run([ds, tmp_path / "out", "participant", "-w", tmp_path / "w"], capsys)
    assert code == 65 and "must be 4-D" in err


def test_empty_bold_is_bad_data_exit_65(tmp_path, capsys):
    ds = make_bids(tmp_path / "ds", nib.Nifti1Image(np.zeros((8, 8, 6, 5), np.float32), np.eye(4)))
    code, err = _run([ds, tmp_path / "out", "participant", "-w", tmp_path / "w"], capsys)
    assert code == 65 and "constant (no signal)" in err
    assert not (tmp_path / "out" / "sub-01").exists()


def test_unwritable_output_exit_73(tmp_path, capsys):
    ds = make_bids(tmp_path / "ds", _bold())
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, err = _run([ds, blocker / "out", "participant"], capsys)
    assert code == 73 and "cannot create the output directory" in err


def test_group_without_participants_exit_66(tmp_path, capsys):
    ds = make_bids(tmp_path / "ds", _bold())
    code, err = _run([ds, tmp_path / "out", "group", "-w", tmp_path / "w"], capsys)
    assert code == 66 and "run the participant level first" in err


def test_console_script_version_and_bad_level():
    out = subprocess.run([sys.executable, "-m", "bids_boldsr.cli.run", "--version"],
                         capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.startswith("bids-boldsr ")
    out = subprocess.run([sys.executable, "-m", "bids_boldsr.cli.run", "/d", "/o", "sessions"],
                         capture_output=True, text=True)
    assert out.returncode == 17 and "unknown analysis level" in out.stderr
    assert "Traceback" not in out.stderr


def test_config_roundtrip(tmp_path):
    from bids_boldsr.config import Config

    cfg = Config.create(bids_dir=tmp_path, output_dir=tmp_path / "o", work_dir=tmp_path / "w",
                        analysis_level="participant", participant_label=("01",),
                        bids_filters={"bold": {"run": 1}})
    cfg.to_json(tmp_path / "c.json")
    assert Config.from_json(tmp_path / "c.json") == cfg
    assert json.loads((tmp_path / "c.json").read_text())["sr_factor"] == 2.0


def test_sigterm_stops_workers_exit_143(tmp_path):
    """kill/scancel/docker stop: exit 143 with one line, and no MultiProc worker left behind
    (an orphaned worker would go on writing into the work directory)."""
    import os
    import signal
    import time

    from bids_boldsr.profile import descendants
    from conftest import shared

    ds = shared("ds-xa30")
    proc = subprocess.Popen([sys.executable, "-m", "bids_boldsr.cli.run", str(ds), str(tmp_path / "out"),
                             "participant", "-w", str(tmp_path / "work"), "--sloppy", "--sr-method", "spline",
                             "--nprocs", "1"], stderr=subprocess.PIPE, text=True)
    workers, deadline = [], time.time() + 240
    while time.time() < deadline and proc.poll() is None and len(workers) < 2:
        time.sleep(1)
        workers = descendants(proc.pid)  # forkserver + its pool worker
    assert proc.poll() is None and workers, "the run ended before it could be interrupted"
    os.kill(proc.pid, signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143
    assert "terminated (SIGTERM)" in err and "Traceback" not in err
    time.sleep(1)
    alive = [p for p in workers if os.path.exists(f"/proc/{p}") and
             open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()[0] != "Z" and
             b"resource_tracker" not in open(f"/proc/{p}/cmdline", "rb").read()]
    assert not alive


def test_more_threads_per_step_than_processes_exit_64(tmp_path, capsys):
    ds = make_bids(tmp_path / "ds", _bold())
    code, err = _run([ds, tmp_path / "out", "participant", "--nprocs", "2", "--omp-nthreads", "3"], capsys)
    assert code == 64 and "--omp-nthreads 3 is more than --nprocs 2" in err and err.count("\n") == 1
    assert not (tmp_path / "out").exists()
