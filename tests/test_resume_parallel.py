"""Kill-and-resume and parallel participants (issue 15). Slow (several whole runs as separate
processes on real data), so marked ``slow``; run them with

    OMP_NUM_THREADS=1 python -m pytest -q -m slow tests/test_resume_parallel.py -p no:cacheprovider -s

- SIGKILL of the whole process group while super-resolution streams its series, and again while
  the outputs are being written; the same command with the same work dir then completes, and
  every output is byte-identical to an uninterrupted run's (which also proves that two CPU runs
  with the same --random-seed are bit-reproducible: the default tvsr model is trained again
  from scratch after the first kill).
- Four participants as four processes at once into one output folder (one shared work dir and
  pybids index) against the same four run serially (one process, one step at a time): identical
  checksums.
"""
from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from conftest import make_bids, shared

pytestmark = pytest.mark.slow

BOLD = "sub-01/func/sub-01_task-fa_run-1_bold.nii.gz"


def _dataset(root: Path, labels, n_volumes=8) -> Path:
    """BOLD-only participants cut from the real ds-xa30 run (participant i starts at volume i)."""
    img = nib.load(shared("ds-xa30", BOLD))
    for i, label in enumerate(labels):
        cut = np.asarray(img.dataobj[..., i:i + n_volumes])
        make_bids(root, nib.Nifti1Image(cut, img.affine, img.header), sub=label, task="fa", tr=1.0)
    return root


def _cmd(ds, out, work, *extra):
    return [sys.executable, "-m", "bids_boldsr.cli.run", str(ds), str(out), "participant",
            "-w", str(work), "--sloppy", "--output-spaces", "bold", "MNI152NLin2009aSym:res-2",
            "--cerebellum", "atlas", "--random-seed", "7", *map(str, extra)]


def _env():
    return {**os.environ, "OMP_NUM_THREADS": "1", "TEMPLATEFLOW_AUTOUPDATE": "0"}


def _run(cmd, log: Path):
    t0 = time.time()
    with open(log, "w") as fh:
        rc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, env=_env()).returncode
    print(f"\n[{time.time() - t0:6.1f} s] rc={rc}: {' '.join(cmd[3:])}", flush=True)
    return rc


def _checksums(out: Path) -> dict:
    """sha256 of every output, except the per-run log folders (settings, run id) and the HTML
    report's content (it embeds the run's settings: run id, output and work folders)."""
    sums = {}
    for p in sorted(out.rglob("*")):
        rel = p.relative_to(out)
        if not p.is_file() or "log" in rel.parts:
            continue
        data = p.read_bytes()
        if p.suffix == ".html":
            data = b"html"
        sums[str(rel)] = hashlib.sha256(data).hexdigest()
    return sums


def _kill_when(cmd, log: Path, ready, timeout=900) -> float:
    """Start ``cmd`` in its own process group; SIGKILL the whole group as soon as ``ready()``."""
    t0 = time.time()
    with open(log, "w") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=_env(),
                                start_new_session=True)
        try:
            while not ready():
                assert proc.poll() is None, f"finished before the kill point: {log.read_text()[-2000:]}"
                assert time.time() - t0 < timeout, "kill point never reached"
                time.sleep(0.02)
        finally:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    print(f"\n[{time.time() - t0:6.1f} s] SIGKILL", flush=True)
    return time.time() - t0


def _complete_outputs_are_whole(out: Path) -> None:
    """A killed run leaves no output that looks complete but is not: every NIfTI and JSON under
    its name reads in full (temporaries are dot-files ending in .part)."""
    for p in out.rglob("*"):
        if not p.is_file() or p.name.startswith("."):
            continue
        if p.name.endswith(".nii.gz"):
            np.asarray(nib.load(p).dataobj)
        elif p.suffix == ".json":
            json.loads(p.read_text())


@pytest.fixture(scope="module")
def one(tmp_path_factory):
    root = tmp_path_factory.mktemp("resume")
    ds = _dataset(root / "ds", ["01"])
    ref = root / "ref"
    assert _run(_cmd(ds, ref / "out", ref / "work"), root / "ref.log") == 0
    return ds, root, _checksums(ref / "out")


def _sr_streaming(work: Path):
    return lambda: any(work.rglob(".sr_bold.nii.gz.*.part"))


def _first_output(out: Path):
    return lambda: (out / "sub-01" / "func").is_dir() and any(
        p.name.endswith((".nii.gz", ".tsv", ".json")) for p in (out / "sub-01" / "func").iterdir())


@pytest.mark.parametrize("when", ["super-resolution", "output-writing"])
def test_sigkill_then_resume_is_identical(one, when):
    ds, root, reference = one
    out, work = root / when / "out", root / when / "work"
    cmd = _cmd(ds, out, work)
    ready = _sr_streaming(work) if when == "super-resolution" else _first_output(out)
    _kill_when(cmd, root / f"{when}-killed.log", ready)
    if out.exists():
        _complete_outputs_are_whole(out)
    assert _run(cmd, root / f"{when}-resumed.log") == 0, (root / f"{when}-resumed.log").read_text()[-3000:]
    assert not [p for p in out.rglob("*") if ".part" in p.name]
    got = _checksums(out)
    assert sorted(got) == sorted(reference)
    differ = sorted(k for k in got if got[k] != reference[k])
    assert differ == [], differ


def test_four_participants_in_parallel_equal_serial(tmp_path):
    labels = ["01", "02", "03", "04"]
    ds = _dataset(tmp_path / "ds", labels, n_volumes=6)
    extra = ["--sr-method", "spline", "--nprocs", "1"]
    # serial: one process, one step at a time (--nprocs 1)
    assert _run(_cmd(ds, tmp_path / "serial", tmp_path / "wserial", *extra), tmp_path / "serial.log") == 0
    t0 = time.time()
    procs = []
    for label in labels:  # parallel: four processes, one output folder, one work dir
        log = open(tmp_path / f"par-{label}.log", "w")
        procs.append((subprocess.Popen(_cmd(ds, tmp_path / "parallel", tmp_path / "wpar",
                                            "--participant-label", label, *extra),
                                       stdout=log, stderr=subprocess.STDOUT, env=_env()), log))
    codes = [p.wait() for p, _ in procs]
    print(f"\n[{time.time() - t0:6.1f} s] 4 parallel runs: {codes}", flush=True)
    assert codes == [0, 0, 0, 0], [(tmp_path / f"par-{x}.log").read_text()[-2000:] for x in labels]
    serial, parallel = _checksums(tmp_path / "serial"), _checksums(tmp_path / "parallel")
    assert sorted(serial) == sorted(parallel) and len(serial) > 20
    assert [k for k in serial if serial[k] != parallel[k]] == []
    for label in labels:
        assert (tmp_path / "parallel" / f"sub-{label}" / "func" / f"sub-{label}_task-fa_desc-sr_bold.nii.gz").is_file()
    desc = json.loads((tmp_path / "parallel" / "dataset_description.json").read_text())
    assert desc["DatasetType"] == "derivative"
