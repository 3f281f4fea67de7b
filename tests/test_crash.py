"""A step that crashes (issue 15): its crash report lands in sub-<label>/log/<run_uuid>/, the
terminal shows a one-screen summary (node, error, report) instead of tracebacks, the
participant's other runs are still written, and the exit code is 1 (74 for a full disk)."""
from __future__ import annotations

import json
import os

import nibabel as nib
import numpy as np
import pytest

from bids_boldsr.cli.run import main
from conftest import make_bids, shared


def _two_run_dataset(root, n_volumes=4):
    """ds-xa30's BOLD cut to a few volumes, as run-1 and run-2 of one BOLD-only participant."""
    img = nib.load(shared("ds-xa30", "sub-01/func/sub-01_task-fa_run-1_bold.nii.gz"))
    cut = nib.Nifti1Image(np.asarray(img.dataobj[..., :n_volumes]), img.affine, img.header)
    make_bids(root, cut, sub="01", task="fa", tr=1.0)
    func = root / "sub-01" / "func"
    (func / "sub-01_task-fa_bold.nii.gz").rename(func / "sub-01_task-fa_run-1_bold.nii.gz")
    (func / "sub-01_task-fa_bold.json").rename(func / "sub-01_task-fa_run-1_bold.json")
    nib.save(cut, func / "sub-01_task-fa_run-2_bold.nii.gz")
    (func / "sub-01_task-fa_run-2_bold.json").write_text(json.dumps({"RepetitionTime": 1.0, "TaskName": "fa"}))
    return root


ARGS = ["--sloppy", "--sr-method", "spline", "--output-spaces", "bold", "--cerebellum", "atlas",
        "--plugin", "Linear"]


@pytest.fixture(scope="module")
def crashed_run(tmp_path_factory, template_cache):
    """One real run in which run-2's super-resolution raises (Linear plugin: in-process, so the
    engine can be replaced); module-scoped, shared by the assertions below."""
    from bids_boldsr.sr import apply

    root = tmp_path_factory.mktemp("crash")
    ds = _two_run_dataset(root / "ds")
    real = apply.super_resolve_bold

    def flaky(bold_file, *a, **k):
        if "run-2" in str(bold_file):
            raise RuntimeError("injected failure in run-2")
        return real(bold_file, *a, **k)
    apply.super_resolve_bold = flaky
    # the session's seeded template, an empty TEMPLATEFLOW_HOME (see test_scaleout.templates)
    saved = {k: os.environ.get(k) for k in ("BIDS_BOLDSR_EMBEDDED_TEMPLATES", "TEMPLATEFLOW_HOME")}
    os.environ["BIDS_BOLDSR_EMBEDDED_TEMPLATES"] = str(template_cache / "templateflow")
    os.environ["TEMPLATEFLOW_HOME"] = str(root / "templateflow-home")
    import io
    import sys

    from bids_boldsr.cli.run import LOG

    import logging

    err, old, handlers = io.StringIO(), sys.stderr, LOG.handlers
    sys.stderr, LOG.handlers = err, []  # main() adds a handler on this stderr
    # nipype's own handlers write here too (they may hold an earlier test's closed stream)
    nipype = [h for name in ("nipype", "nipype.workflow", "nipype.interface", "nipype.utils")
              for h in logging.getLogger(name).handlers if isinstance(h, logging.StreamHandler)]
    streams = [h.stream for h in nipype]
    for h in nipype:
        h.stream = err  # (setStream would flush a closed stream)
    try:
        code = main([str(ds), str(root / "out"), "participant", "-w", str(root / "work"), *ARGS])
    finally:
        sys.stderr, LOG.handlers = old, handlers
        for h, stream in zip(nipype, streams):
            h.stream = stream
        apply.super_resolve_bold = real
        for key, val in saved.items():
            if val is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = val
    return code, err.getvalue(), root / "out"


def test_crash_exit_1_with_summary(crashed_run):
    code, err, out = crashed_run
    assert code == 1, err
    lines = err.strip().splitlines()
    assert lines[-1].startswith("bids-boldsr: error: 1 processing step(s) failed; crash reports in "
                                f"{out}/sub-01/log/"), err
    i = lines.index("1 processing step(s) failed:")
    assert "run_2" in lines[i + 1] and lines[i + 1].endswith(": RuntimeError: injected failure in run-2"), err
    assert lines[i + 2].startswith(f"    crash report: {out}/sub-01/log/")
    assert "Traceback" not in err


def test_crash_report_in_participant_log(crashed_run):
    _, err, out = crashed_run
    reports = list((out / "sub-01" / "log").glob("*/crash-*.txt"))
    assert len(reports) == 1 and "injected failure in run-2" in reports[0].read_text()
    assert (reports[0].parent / "config.json").is_file()  # beside the run's saved settings
    prov = json.loads((reports[0].parent / "provenance.json").read_text())
    assert prov["RandomSeed"] == 0 and prov["SoftwareVersions"]["torch"] == __import__("torch").__version__
    assert not (out / "logs").exists()


def test_other_run_kept(crashed_run):
    _, _, out = crashed_run
    func = out / "sub-01" / "func"
    sr = nib.load(func / "sub-01_task-fa_run-1_desc-sr_bold.nii.gz")
    assert sr.shape == (128, 128, 66, 4)
    meta = json.loads((func / "sub-01_task-fa_run-1_desc-sr_bold.json").read_text())
    assert meta["SoftwareVersions"]["bids-boldsr"] == __import__("bids_boldsr").__version__
    assert not (func / "sub-01_task-fa_run-2_desc-sr_bold.nii.gz").exists()
    assert not list(out.rglob("*.part")) and not list(out.rglob(".*.part*"))


# --- filing and summarising without a workflow (fast) ------------------------------------

def _crash_text(node, error):
    return f"Node: {node}\nWorking directory: /w/x\n\nNode inputs:\n...\nTraceback (most recent " \
           f"call last):\n  File \"x.py\", line 1\n{error}\n"


@pytest.mark.parametrize("error,code,tail", [
    ("ValueError: boom", 1, ""),
    ("OSError: [Errno 28] No space left on device", 74, " (no space left on device)"),
])
def test_crashes_filed_per_participant(tmp_path, capsys, monkeypatch, template_cache, error, code, tail):
    """Two participants: the shared crash folder is emptied into each one's log folder."""
    from nipype.pipeline.engine import Workflow

    from bids_boldsr.cli.run import LOG

    monkeypatch.setattr(LOG, "handlers", [])
    ds = tmp_path / "ds"
    rng = np.random.default_rng(0)
    for sub in ("01", "02"):
        make_bids(ds, nib.Nifti1Image(rng.normal(500, 20, (8, 8, 6, 5)).astype(np.float32),
                                      np.diag([3, 3, 3, 1.0])), sub=sub)

    def crash(self, plugin=None, plugin_args=None, updatehash=False):
        from pathlib import Path

        crash_dir = Path(self.config["execution"]["crashdump_dir"])
        crash_dir.mkdir(parents=True, exist_ok=True)
        for sub in ("01", "02"):
            (crash_dir / f"crash-1-root-sr-{sub}.txt").write_text(
                _crash_text(f"top_wf.sub_{sub}_wf.bold_task_rest_wf.sr", error))
        raise RuntimeError("Workflow did not execute cleanly. Check log for details")
    monkeypatch.setattr(Workflow, "run", crash)
    monkeypatch.setenv("TEMPLATEFLOW_HOME", str(tmp_path / "tf"))
    monkeypatch.setenv("BIDS_BOLDSR_EMBEDDED_TEMPLATES", str(template_cache / "templateflow"))
    rc = main([str(ds), str(tmp_path / "out"), "participant", "-w", str(tmp_path / "w"),
               "--skip-bids-validation", "--output-spaces", "bold", "--sr-method", "spline"])
    err = capsys.readouterr().err
    assert rc == code, err
    out = tmp_path / "out"
    for sub in ("01", "02"):
        assert len(list((out / f"sub-{sub}" / "log").glob("*/crash-*.txt"))) == 1
        assert f"  sub_{sub}_wf.bold_task_rest_wf.sr: {error}" in err
    assert not (out / "logs").exists()
    assert err.strip().splitlines()[-1].startswith(f"bids-boldsr: error: 2 processing step(s) failed{tail}; ")


def test_crash_report_without_node_line(tmp_path):
    """A report that is only a traceback: named after its file, never a 'Traceback' line."""
    from bids_boldsr.crashes import read_crash, summary

    path = tmp_path / "crash-20260101-000000-root-hmc-1234.txt"
    path.write_text("Traceback ...")
    crash = read_crash(path)
    assert crash.node == "crash-20260101-000000-root-hmc-1234"
    assert crash.error == "(no error line: see the crash report)"
    assert "Traceback" not in "\n".join(summary([crash]))


def test_nipype_crash_log_keeps_one_line():
    """The nipype record that carries a whole traceback is cut to its first line."""
    import logging

    from bids_boldsr.crashes import ShortCrashLog

    rec = logging.LogRecord("nipype.workflow", logging.ERROR, "x", 1, "Saving crash info to %s\n%s",
                            ("/o/crash-1.txt", "Traceback (most recent call last):\n  ...\nValueError: x"), None)
    assert ShortCrashLog().filter(rec) and rec.getMessage() == "Saving crash info to /o/crash-1.txt"
