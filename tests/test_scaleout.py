"""Cluster scale-out without a cluster: participant selection by index, the participant list,
the pybids index shared by parallel runs, Nipype plugins reaching ``wf.run``, and the
``--write-sbatch`` job-array script (the script run on a real SLURM: tests/test_slurm.py)."""
import json
import shlex
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from bids_boldsr.cli.run import main
from conftest import make_bids


def _bold(seed=0):
    rng = np.random.default_rng(seed)
    return nib.Nifti1Image(rng.normal(500, 20, (8, 8, 6, 5)).astype(np.float32),
                           np.diag([3, 3, 3, 1.0]))


@pytest.fixture
def ds(tmp_path):
    """sub-01..03 with a BOLD run each; sub-04 has only a T1w (no BOLD: never selected)."""
    root = tmp_path / "ds"
    for i, sub in enumerate(("01", "02", "03")):
        make_bids(root, _bold(i), sub=sub)
    anat = root / "sub-04" / "anat"
    anat.mkdir(parents=True)
    nib.save(nib.Nifti1Image(np.ones((4, 4, 4), np.float32), np.eye(4)), anat / "sub-04_T1w.nii.gz")
    return root


def _run(argv, capsys):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


class _Captured(Exception):
    pass


@pytest.fixture
def templates(monkeypatch, template_cache, tmp_path):
    """The session's seeded embedded template, and an empty TEMPLATEFLOW_HOME (indexing a full
    user cache costs ~10 s per template lookup on this machine)."""
    monkeypatch.setenv("BIDS_BOLDSR_EMBEDDED_TEMPLATES", str(template_cache / "templateflow"))
    monkeypatch.setenv("TEMPLATEFLOW_HOME", str(tmp_path / "templateflow-home"))
    from bids_boldsr.cli.run import LOG

    monkeypatch.setattr(LOG, "handlers", [])  # log to this test's stderr, not an earlier one's


def _one_error(err: str) -> str:
    """The run's single error line (the log lines before it are fine; a traceback is not)."""
    errors = [x for x in err.splitlines() if x.startswith("bids-boldsr: error:")]
    assert len(errors) == 1 and err.splitlines()[-1] == errors[0] and "Traceback" not in err, err
    return errors[0]


@pytest.fixture
def fake_run(monkeypatch, templates):
    """``Workflow.run`` replaced: records the workflow and the plugin, runs nothing."""
    from nipype.pipeline.engine import Workflow

    calls = []

    def run(self, plugin=None, plugin_args=None, updatehash=False):
        calls.append({"wf": self, "plugin": plugin, "plugin_args": plugin_args,
                      "subjects": sorted(n.name for n in self._graph.nodes())})
    monkeypatch.setattr(Workflow, "run", run)
    return calls


# --- the participant list and --participant-index ----------------------------------------

def test_list_participants_sorted_with_bold_only(ds, tmp_path, capsys):
    code, out, err = _run([ds, tmp_path / "out", "participant", "--list-participants",
                           "-w", tmp_path / "w"], capsys)
    assert code == 0 and out == "01\n02\n03\n"
    assert not (tmp_path / "out").exists()  # listing writes no output folder
    code, out, _ = _run([ds, tmp_path / "out", "participant", "--list-participants",
                         "--participant-label", "sub-03", "01", "-w", tmp_path / "w"], capsys)
    assert code == 0 and out == "01\n03\n"
    code, out, _ = _run([ds, tmp_path / "out", "participant", "--list-participants",
                         "--participant-label", "03", "01", "--participant-index", "1",
                         "-w", tmp_path / "w"], capsys)
    assert code == 0 and out == "03\n"


def test_list_participants_nothing_selected_exit_18(ds, tmp_path, capsys):
    code, out, err = _run([ds, tmp_path / "out", "participant", "--list-participants",
                           "--task", "other", "-w", tmp_path / "w"], capsys)
    assert code == 18 and out == "" and "no BOLD runs match" in err


def test_participant_index_out_of_range_exit_18(ds, tmp_path, capsys):
    code, _, err = _run([ds, tmp_path / "out", "participant", "--participant-index", "3",
                         "-w", tmp_path / "w"], capsys)
    assert code == 18 and err.count("\n") == 1 and "Traceback" not in err
    assert "--participant-index 3 is out of range" in err and "indices 0-2" in err
    code, _, err = _run([ds, tmp_path / "out", "participant", "--participant-label", "02",
                         "--participant-index", "1", "-w", tmp_path / "w"], capsys)
    assert code == 18 and "1 participant(s), indices 0-0" in err


@pytest.mark.parametrize("argv, message", [
    (["--participant-index", "-1"], "must be >= 0"),
    (["--participant-index", "x"], "not an integer"),
    (["--write-sbatch", "j.sh", "--participant-index", "0"], "drop --participant-index"),
    (["--write-sbatch", "j.sh", "--list-participants"], "exclude each other"),
    (["--container-image", "x.sif"], "only goes with --write-sbatch"),
    (["--sbatch-option=--time=1:00:00"], "only goes with --write-sbatch"),
])
def test_cluster_usage_errors_exit_64(ds, tmp_path, capsys, argv, message):
    code, _, err = _run([ds, tmp_path / "out", "participant", *argv], capsys)
    assert code == 64 and message in err and err.count("\n") == 1


@pytest.mark.parametrize("flag", [["--participant-index", "0"], ["--list-participants"],
                                  ["--write-sbatch", "j.sh"]])
def test_cluster_options_refused_at_group_level(ds, tmp_path, capsys, flag):
    code, _, err = _run([ds, tmp_path / "out", "group", *flag], capsys)
    assert code == 64 and f"{flag[0]} is for the participant level" in err


def test_participant_index_runs_that_participant(ds, tmp_path, capsys, fake_run):
    out = tmp_path / "out"
    code, _, err = _run([ds, out, "participant", "--participant-label", "01", "03",
                         "--participant-index", "1", "-w", tmp_path / "w", "--skip-bids-validation",
                         "--sr-method", "spline", "--cerebellum", "atlas"], capsys)
    assert code == 0, err
    assert len(fake_run) == 1 and fake_run[0]["subjects"] == ["sub_03_wf"]
    configs = list(out.glob("sub-*/log/*/config.json"))
    assert [c.parts[-4] for c in configs] == ["sub-03"]
    assert json.loads(configs[0].read_text())["participant_label"] == ["03"]
    assert json.loads((out / "dataset_description.json").read_text())["DatasetType"] == "derivative"


# --- the pybids index shared by parallel runs ------------------------------------------

def test_parallel_runs_build_one_pybids_index(ds, tmp_path):
    """Array tasks sharing a work dir: the index is built in a temporary folder and renamed, so
    none reads a half-built one (before: some saw no participants, one crashed in sqlite)."""
    code = ("import sys; from pathlib import Path; from bids_boldsr import bids; "
            "layout = bids.load_layout(Path(sys.argv[1]), Path(sys.argv[2])); "
            "print(','.join(sorted(layout.get_subjects())), len(layout.get(suffix='bold', extension='.nii.gz')))")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(ds), str(tmp_path / "w")],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(4)]
    results = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, [err[-500:] for _, err in results]
    assert [out.strip() for out, _ in results] == ["01,02,03,04 3"] * 4
    entries = list((tmp_path / "w" / "bids_db").iterdir())
    assert len(entries) == 1 and (entries[0] / "layout_index.sqlite").is_file()  # no *.part left


def test_bids_database_dir_is_used(ds, tmp_path, capsys):
    code, out, _ = _run([ds, tmp_path / "out", "participant", "--list-participants",
                         "--bids-database-dir", tmp_path / "db", "-w", tmp_path / "w"], capsys)
    assert code == 0 and out == "01\n02\n03\n"
    assert list((tmp_path / "db").glob("*/layout_index.sqlite"))
    assert not (tmp_path / "w").exists()
    code, _, err = _run([ds, tmp_path / "out", "participant", "--list-participants",
                         "--bids-database-dir", ds / "db"], capsys)
    assert code == 64 and "inside the input dataset" in err


# --- Nipype plugins --------------------------------------------------------------------

@pytest.mark.parametrize("argv, plugin, args", [
    (["--plugin", "SLURMGraph", "--plugin-args", '{"sbatch_args": "--mem=8G --time=1:00:00"}'],
     "SLURMGraph", {"sbatch_args": "--mem=8G --time=1:00:00"}),
    (["--plugin", "linear"], "Linear", {}),
    (["--plugin", "SLURM", "--plugin-args", "ARGS_FILE"], "SLURM", {"max_jobs": 5}),
])
def test_plugin_and_args_reach_wf_run(ds, tmp_path, capsys, fake_run, argv, plugin, args):
    (tmp_path / "args.json").write_text('{"max_jobs": 5}')
    argv = [str(tmp_path / "args.json") if a == "ARGS_FILE" else a for a in argv]
    code, _, err = _run([ds, tmp_path / "out", "participant", "--participant-label", "01",
                         "-w", tmp_path / "w", "--skip-bids-validation", *argv], capsys)
    assert code == 0, err
    assert fake_run[0]["plugin"] == plugin and fake_run[0]["plugin_args"] == args


def test_multiproc_keeps_its_defaults_under_plugin_args(ds, tmp_path, capsys, fake_run):
    code, _, err = _run([ds, tmp_path / "out", "participant", "--participant-label", "01",
                         "-w", tmp_path / "w", "--skip-bids-validation", "--nprocs", "2",
                         "--mem-gb", "3", "--plugin-args", '{"n_procs": 1, "maxtasksperchild": 1}'],
                        capsys)
    assert code == 0, err
    assert fake_run[0]["plugin"] == "MultiProc"
    assert fake_run[0]["plugin_args"] == {"n_procs": 1, "memory_gb": 3.0, "n_gpu_procs": 1,
                                          "raise_insufficient": False, "mp_context": "forkserver",
                                          "maxtasksperchild": 1}


@pytest.mark.parametrize("argv, message", [
    (["--plugin", "Slurmish"], "unknown --plugin 'Slurmish': choose from"),
    (["--plugin-args", "{n_procs: 2}"], "--plugin-args is not valid JSON"),
    (["--plugin-args", "[1, 2]"], "neither a JSON object nor a JSON file"),
    (["--plugin-args", '["a"]'], "neither a JSON object nor a JSON file"),
    (["--plugin-args", "nofile.json"], "neither a JSON object nor a JSON file"),
    (["--plugin-args", "BAD_FILE"], "is not valid JSON"),
    (["--plugin-args", "LIST_FILE"], "must be a JSON object"),
])
def test_bad_plugin_or_args_exit_64(ds, tmp_path, capsys, argv, message):
    (tmp_path / "bad.json").write_text("{oops")
    (tmp_path / "list.json").write_text("[1]")
    argv = [{"BAD_FILE": str(tmp_path / "bad.json"),
             "LIST_FILE": str(tmp_path / "list.json")}.get(a, a) for a in argv]
    code, _, err = _run([ds, tmp_path / "out", "participant", *argv], capsys)
    assert code == 64 and message in err and err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_failed_step_is_one_line_exit_1(ds, tmp_path, capsys, monkeypatch, templates):
    """nipype re-raises a failed node's own error: one line, exit 1, never a traceback."""
    from nipype.pipeline.engine import Workflow

    def crash(self, plugin=None, plugin_args=None, updatehash=False):
        crash_dir = Path(self.config["execution"]["crashdump_dir"])
        crash_dir.mkdir(parents=True, exist_ok=True)
        (crash_dir / "crash-20260101-000000-root-hmc-1234.txt").write_text("Traceback ...")
        raise RuntimeError("Traceback (most recent call last):\n  ...\nValueError: boom")
    monkeypatch.setattr(Workflow, "run", crash)
    code, _, err = _run([ds, tmp_path / "out", "participant", "--participant-label", "01",
                         "-w", tmp_path / "w", "--skip-bids-validation"], capsys)
    assert code == 1
    assert "1 processing step(s) failed; crash reports in" in _one_error(err) and "sub-01/log/" in err

    def plugin_fails(self, plugin=None, plugin_args=None, updatehash=False):
        raise RuntimeError("sbatch: error: invalid partition")
    monkeypatch.setattr(Workflow, "run", plugin_fails)
    code, _, err = _run([ds, tmp_path / "out", "participant", "--participant-label", "01",
                         "-w", tmp_path / "w", "--skip-bids-validation", "--plugin", "SLURM"],
                        capsys)
    assert code == 1
    assert _one_error(err).endswith("the Nipype SLURM plugin failed: sbatch: error: invalid partition")


# --- --write-sbatch ----------------------------------------------------------------------

def _task_argv(script: str, index: int) -> list[str]:
    """The command line the script's task ``index`` runs (continuation lines joined)."""
    body = script.replace("\\\n", " ")
    line = next(x for x in body.splitlines() if x.startswith("exec "))
    work = next(x for x in body.splitlines() if x.startswith("work="))
    work_dir = shlex.split(work.replace('"$SLURM_ARRAY_TASK_ID"', str(index)))[0].split("=", 1)[1]
    line = line.replace('"$SLURM_ARRAY_TASK_ID"', str(index)).replace('"$work"', work_dir)
    return shlex.split(line)[1:]


def test_write_sbatch_two_participants(tmp_path, capsys):
    from bids_boldsr.cli.parser import parse_args

    ds = tmp_path / "ds"
    for i, sub in enumerate(("01", "02")):
        make_bids(ds, _bold(i), sub=sub)
    out, work, job = tmp_path / "out", tmp_path / "work", tmp_path / "job.sh"
    code, stdout, err = _run([ds, out, "participant", "--write-sbatch", job, "-w", work,
                              "--nprocs", "2", "--mem-gb", "6", "--device", "cpu", "--sloppy",
                              "--sr-method", "spline", "--cerebellum", "atlas",
                              "--output-spaces", "bold", "MNI152NLin2009aSym:res-2",
                              "--sbatch-option=--time=02:00:00", "--sbatch-option", "partition=debug"],
                             capsys)
    assert code == 0, err
    text = job.read_text()
    assert job.stat().st_mode & 0o111
    sbatch = [x for x in text.splitlines() if x.startswith("#SBATCH")]
    assert sbatch == ["#SBATCH --job-name=bids-boldsr", "#SBATCH --array=0-1",
                      "#SBATCH --cpus-per-task=2", "#SBATCH --mem=6G", "#SBATCH --time=02:00:00",
                      "#SBATCH --partition=debug"]  # --device cpu: no --gres
    assert "#   0  sub-01\n#   1  sub-02\n" in text
    assert subprocess.run(["bash", "-n", str(job)]).returncode == 0
    assert not out.exists()  # the tasks create it
    argv = _task_argv(text, 1)
    assert argv[:3] == [sys.executable, "-m", "bids_boldsr.cli.run"]
    opts = parse_args(argv[3:])
    assert (opts.bids_dir, opts.output_dir, opts.analysis_level) == (ds, out, "participant")
    assert opts.participant_index == 1 and opts.work_dir == work / "array-1"
    assert opts.bids_database_dir == work / "bids_db"
    assert list((work / "bids_db").glob("*/layout_index.sqlite"))  # built once, here
    assert (opts.nprocs, opts.mem_gb, opts.device, opts.sloppy) == (2, 6.0, "cpu", True)
    assert (opts.sr_method, opts.cerebellum) == ("spline", "atlas")
    assert opts.output_spaces.strings() == ["bold", "MNI152NLin2009aSym:res-2"]
    # the follow-up: submit the array, then the group level depending on all of it
    lines = stdout.splitlines()
    assert lines[0].startswith(f"bids-boldsr: wrote {job}: a job array of 2 task(s)")
    assert lines[2] == f"  jobid=$(sbatch --parsable {job})"
    group = shlex.split(lines[3])
    assert group[:3] == ["sbatch", "--dependency=afterok:$jobid", "--kill-on-invalid-dep=yes"]
    assert "--time=02:00:00" in group and group[-2] == "--wrap"
    assert shlex.split(group[-1]) == [sys.executable, "-m", "bids_boldsr.cli.run", str(ds),
                                      str(out), "group", "-w", str(work / "group")]


def test_write_sbatch_gpu_and_container(tmp_path, capsys):
    ds = make_bids(tmp_path / "ds", _bold(), sub="01")
    make_bids(ds, _bold(1), sub="02")
    sif = tmp_path / "bids-boldsr.sif"
    sif.write_text("not really an image")
    out, work, job = tmp_path / "out", tmp_path / "work", tmp_path / "job.sh"
    code, stdout, err = _run([ds, out, "participant", "--write-sbatch", job, "-w", work,
                              "--container-image", sif, "--participant-label", "02"], capsys)
    assert code == 0, err
    text = job.read_text()
    assert "#SBATCH --array=0-0" in text and "#SBATCH --gres=gpu:1" in text
    assert "#SBATCH --cpus-per-task=8" in text and "#SBATCH --mem=32G" in text  # the defaults
    assert f'mkdir -p "$work" {out}\n' in text  # bind sources must exist
    argv = _task_argv(text, 0)
    assert argv[:6] == ["apptainer", "run", "--nv", "--cleanenv", "-B",
                        f"{ds}:{ds}:ro,{out},{work}"]
    assert argv[6:10] == [str(sif), str(ds), str(out), "participant"]
    assert argv[argv.index("--participant-label") + 1] == "02"
    group = shlex.split(shlex.split(stdout.splitlines()[3])[-1])
    assert group[:2] == ["apptainer", "run"]
    assert group[-5:] == ["group", "-w", str(work / "group"), "--participant-label", "02"]
    # CPU only: no GPU request, no --nv
    code, _, err = _run([ds, out, "participant", "--write-sbatch", job, "-w", work,
                         "--container-image", sif, "--device", "cpu"], capsys)
    assert code == 0, err
    text = job.read_text()
    assert "--gres" not in text and "--nv" not in text and "#SBATCH --array=0-1" in text
    code, _, err = _run([ds, out, "participant", "--write-sbatch", job, "-w", work,
                         "--container-image", tmp_path / "missing.sif"], capsys)
    assert code == 66 and "--container-image" in err and "does not exist" in err
