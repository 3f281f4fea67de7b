"""Bad input, one case a row (issue 15): exit code, the one-line message, never a traceback,
nothing written into the (read-only) input dataset, nothing written into the output folder, and
the workflow never started.

Each dataset is a copy of the real ds-xa30 (../shared/data) with one defect, made read-only (a
read-only bind mount as root, else no write permission) before the run.
"""
from __future__ import annotations

import gzip
import json
import shutil

import nibabel as nib
import numpy as np
import pytest

from bids_boldsr.cli.run import main
from conftest import shared
from fsutil import read_only_copy, snapshot, tmpfs

BOLD = "sub-01/func/sub-01_task-fa_run-1_bold.nii.gz"
SIDECAR = "sub-01/func/sub-01_task-fa_run-1_bold.json"
T1W = "sub-01/anat/sub-01_T1w.nii.gz"


# --- defects (each edits a writable copy of ds-xa30 in place) ----------------------------

def _edit_bold(ds, fn):
    img = nib.load(ds / BOLD)
    data, affine, hdr = fn(np.asarray(img.dataobj, dtype=np.float32), img.affine.copy(), img.header.copy())
    hdr.set_data_dtype(np.float32)
    nib.save(nib.Nifti1Image(data, affine, hdr), ds / BOLD)


def _edit_sidecar(ds, **changes):
    meta = json.loads((ds / SIDECAR).read_text())
    for key, val in changes.items():
        if val is None:
            meta.pop(key, None)
        else:
            meta[key] = val
    (ds / SIDECAR).write_text(json.dumps(meta))


def _truncate(path):
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])


def _nan_volume(d, a, h):
    d[..., 7] = np.nan
    return d, a, h


def _inf_voxel(d, a, h):
    d[10, 10, 10, 15] = np.inf
    return d, a, h


def _tiny_voxels(d, a, h):
    a[:3, :3] *= 1e-4
    return d, a, h


def _t1w_4d(ds):
    img = nib.load(ds / T1W)
    data = np.asarray(img.dataobj)
    nib.save(nib.Nifti1Image(np.stack([data, data], -1), img.affine), ds / T1W)


def _not_bids(ds):
    (ds / "dataset_description.json").unlink()


def _bad_name(ds):
    shutil.copy(ds / BOLD, ds / "sub-01/func/sub-01_task-fa_run-1_bold_copy.nii.gz")


def _empty(ds):
    shutil.rmtree(ds / "sub-01")
    (ds / "notes.txt").write_text("not a dataset")


def _filter(content):
    def write(ds, tmp):
        path = tmp / "filter.json"
        path.write_text(json.dumps(content))
        return ["--bids-filter-file", path]
    return write


# id, defect (None: the intact copy), extra arguments, exit code, part of the message
CASES = [
    ("not-bids", _not_bids, [], 16, "dataset_description.json is missing (use --skip-bids-validation"),
    ("not-bids-skip-empty", _empty, ["--skip-bids-validation"], 18, "no sub-<label> folders with data in"),
    ("invalid-file-name", _bad_name, [], 16, "1 file name(s) are not valid BIDS, e.g. "
                                             "/sub-01/func/sub-01_task-fa_run-1_bold_copy.nii.gz"),
    ("unknown-level", None, ["@level", "everything"], 17, "unknown analysis level 'everything'"),
    ("label-matches-nothing", None, ["--participant-label", "sub-99"], 18,
     "participant(s) 99 not found in the dataset (available: 01)"),
    ("task-selects-nothing", None, ["--task", "rest"], 18, "no BOLD runs match"),
    ("filter-unknown-entity", None, [_filter({"bold": {"foo": 1}})], 64,
     "unknown BIDS entity foo in 'bold'"),
    ("filter-selects-nothing", None, [_filter({"bold": {"run": 7}})], 18, "no BOLD runs match"),
    ("filter-bad-json", None, [lambda ds, tmp: (tmp / "f.json").write_text("{bold") and
                               ["--bids-filter-file", tmp / "f.json"]], 64, "is not valid JSON"),
    ("bold-3d", lambda ds: _edit_bold(ds, lambda d, a, h: (d[..., 0], a, h)), [], 65,
     f"{BOLD}: BOLD must be 4-D with at least 2 volumes, got shape (64, 64, 33)"),
    ("bold-truncated", lambda ds: _truncate(ds / BOLD), [], 65,
     f"{BOLD}: the image data cannot be read, the file is truncated or corrupt (EOFError"),
    ("bold-corrupt", lambda ds: (ds / BOLD).write_bytes(gzip.compress(b"\x00" * 1000)), [], 65,
     f"{BOLD}: not a readable NIfTI image"),
    ("bold-nan-volume", lambda ds: _edit_bold(ds, _nan_volume), [], 65,
     f"{BOLD}: volume 7 contains NaN or infinite values"),
    ("bold-inf-voxel", lambda ds: _edit_bold(ds, _inf_voxel), [], 65,
     f"{BOLD}: volume 15 contains NaN or infinite values"),
    ("tr-missing", lambda ds: _edit_sidecar(ds, RepetitionTime=None), [], 65,
     f"{BOLD}: no RepetitionTime in its JSON sidecar (BIDS requires it); add"),
    ("tr-zero", lambda ds: _edit_sidecar(ds, RepetitionTime=0), [], 65,
     "RepetitionTime 0 in the sidecar is not a positive number of seconds"),
    ("tr-contradicts-header", lambda ds: _edit_sidecar(ds, RepetitionTime=2.5), [], 65,
     "the sidecar's RepetitionTime 2.5 s contradicts the NIfTI header's 1 s"),
    ("slicetiming-contradicts-header", lambda ds: _edit_sidecar(ds, SliceTiming=[0.0, 0.5]), [], 65,
     "SliceTiming has 2 entries but the image has 33 slices"),
    ("t1w-4d", _t1w_4d, [], 65, f"{T1W}: a T1w must be one 3-D volume, got shape (96, 128, 128, 2)"),
    ("t1w-truncated", lambda ds: _truncate(ds / T1W), [], 65, f"{T1W}: the image data cannot be read"),
    ("voxels-implausible", lambda ds: _edit_bold(ds, _tiny_voxels), [], 65,
     f"{BOLD}: implausible voxel size"),
    ("sr-factor-absurd", None, ["--sr-factor", "50"], 64, "--sr-factor 50 is out of range: choose 1 to 8"),
    ("sr-factor-below-one", None, ["--sr-factor", "0.5"], 64, "--sr-factor 0.5 is out of range"),
    ("sr-voxel-absurd", None, ["--sr-voxel-size", "0.01"], 64,
     "--sr-voxel-size 0.01 is out of range: choose 0.1 to 20 mm"),
    ("sr-grid-too-large", None, ["--sr-voxel-size", "0.15"], 64,
     f"{BOLD}: --sr-voxel-size 0.15 gives a 1440x1440x748 grid"),
    ("sr-factor-not-a-number", None, ["--sr-factor", "two"], 64, "not a number: 'two'"),
    ("svf-level-too-fine", None, ["--svf-finest-mm", "0.5"], 64, "must be between 1 and 4 mm: '0.5'"),
]


@pytest.fixture
def no_workflow(monkeypatch):
    """Fail loudly if a case gets as far as running the workflow."""
    from nipype.pipeline.engine import Workflow

    def run(self, *a, **k):
        raise AssertionError("the workflow started: the check did not stop the run up front")
    monkeypatch.setattr(Workflow, "run", run)
    from bids_boldsr.cli.run import LOG

    monkeypatch.setattr(LOG, "handlers", [])


def _run(argv, capsys):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _one_error(err: str) -> str:
    lines = err.strip().splitlines()
    assert "Traceback" not in err and lines and lines[-1].startswith("bids-boldsr: error: "), err
    assert sum(x.startswith("bids-boldsr: error:") for x in lines) == 1, err
    return lines[-1]


@pytest.mark.parametrize("case,defect,extra,code,message", CASES, ids=[c[0] for c in CASES])
def test_bad_input(case, defect, extra, code, message, tmp_path, capsys, no_workflow):
    src = tmp_path / "src"
    shutil.copytree(shared("ds-xa30"), src)
    for p in [src, *src.rglob("*")]:
        p.chmod(0o755 if p.is_dir() else 0o644)
    if defect is not None:
        defect(src)
    with read_only_copy(src, tmp_path / "ds") as ds:
        before = snapshot(ds)
        level = "participant"
        args = []
        for x in extra:
            args += x(ds, tmp_path) if callable(x) else [x]
        if "@level" in args:
            i = args.index("@level")
            level = args[i + 1]
            del args[i:i + 2]
        out = tmp_path / "out"
        rc, _, err = _run([ds, out, level, "-w", tmp_path / "work", *args], capsys)
        assert rc == code, err
        assert message in _one_error(err), err
        assert snapshot(ds) == before  # nothing written into bids_dir
    assert not out.exists() or not any(out.rglob("*"))  # nothing written into output_dir


# --- cases that need more than an edited copy ---------------------------------------------

@pytest.fixture
def ro_ds(tmp_path):
    with read_only_copy(shared("ds-xa30"), tmp_path / "ds") as ds:
        before = snapshot(ds)
        yield ds
        assert snapshot(ds) == before


def test_missing_bids_dir_exit_66(tmp_path, capsys, no_workflow):
    rc, _, err = _run([tmp_path / "nope", tmp_path / "out", "participant"], capsys)
    assert rc == 66 and _one_error(err).endswith(f"BIDS dataset folder {tmp_path / 'nope'} does not exist")


@pytest.mark.parametrize("where", ["same", "inside"])
def test_output_in_bids_dir_exit_64(ro_ds, tmp_path, capsys, no_workflow, where):
    out = ro_ds if where == "same" else ro_ds / "derivatives" / "boldsr"
    rc, _, err = _run([ro_ds, out, "participant", "-w", tmp_path / "w"], capsys)
    assert rc == 64 and "bids-boldsr never writes into bids_dir (choose another folder)" in _one_error(err)


def test_not_bids_with_skip_validation_works(tmp_path, capsys, no_workflow):
    """No dataset_description.json and --skip-bids-validation: pybids must not raise
    BIDSValidationError; the participant list is there."""
    src = tmp_path / "src"
    shutil.copytree(shared("ds-xa30"), src)
    (src / "dataset_description.json").chmod(0o644)
    (src / "dataset_description.json").unlink()
    with read_only_copy(src, tmp_path / "ds") as ds:
        rc, out, err = _run([ds, tmp_path / "out", "participant", "-w", tmp_path / "w",
                             "--skip-bids-validation", "--list-participants"], capsys)
    assert rc == 0 and out == "01\n" and "Traceback" not in err


@pytest.mark.parametrize("which", ["output", "work"])
def test_read_only_folder_exit_73(ro_ds, tmp_path, capsys, no_workflow, which):
    with tmpfs(tmp_path / "ro", readonly=True) as ro:
        out = ro if which == "output" else tmp_path / "out"
        work = ro if which == "work" else tmp_path / "w"
        rc, _, err = _run([ro_ds, out, "participant", "-w", work], capsys)
    assert rc == 73, err
    assert f"the {which} directory {ro} is not writable" in _one_error(err)


def test_output_cannot_be_created_exit_73(ro_ds, tmp_path, capsys, no_workflow):
    (tmp_path / "file").write_text("x")
    rc, _, err = _run([ro_ds, tmp_path / "file" / "out", "participant", "-w", tmp_path / "w"], capsys)
    assert rc == 73 and "cannot create the output directory" in _one_error(err)


def test_full_disk_exit_74_nothing_written(ro_ds, tmp_path, capsys, no_workflow):
    """A 2 MiB file system as the output folder: refused before anything is written there."""
    with tmpfs(tmp_path / "small", size="2m") as small:
        rc, _, err = _run([ro_ds, small, "participant", "-w", tmp_path / "w"], capsys)
        assert rc == 74, err
        line = _one_error(err)
        assert f"not enough free space for the output directory {small}: about" in line
        assert list(small.iterdir()) == []


def test_device_cuda_without_gpu_exit_75(ro_ds, tmp_path, capsys, no_workflow):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is visible here")
    rc, _, err = _run([ro_ds, tmp_path / "out", "participant", "-w", tmp_path / "w",
                       "--device", "cuda"], capsys)
    assert rc == 75 and "--device cuda was requested but no CUDA device is visible" in _one_error(err)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*"))


@pytest.mark.parametrize("defect", ["missing", "tampered"])
def test_broken_sr_prior_exit_66_before_any_participant(ro_ds, tmp_path, capsys, no_workflow, monkeypatch, defect):
    """The default SR method's shipped weights are checked up front: one line, exit 66, nothing written."""
    from bids_boldsr.sr.tvsr import train as sr_train

    weights = tmp_path / "prior" / "tvsr_prior.pt"
    weights.parent.mkdir()
    if defect == "tampered":  # weights that do not match their record
        shutil.copy(sr_train.PRIOR_WEIGHTS, weights)
        record = json.loads(sr_train.PRIOR_WEIGHTS.with_suffix(".json").read_text())
        weights.with_suffix(".json").write_text(json.dumps({**record, "weights_sha256": "0" * 64}))
    monkeypatch.setattr(sr_train, "PRIOR_WEIGHTS", weights)
    out = tmp_path / "out"
    rc, _, err = _run([ro_ds, out, "participant", "-w", tmp_path / "w"], capsys)
    line = _one_error(err)
    assert rc == 66 and "--sr-method tvsr-prior:" in line and "choose another --sr-method" in line
    assert ("not found" if defect == "missing" else "do not match their record") in line
    assert not out.exists() or not any(out.rglob("*"))
    from bids_boldsr.cli.run import _check_sr_prior
    _check_sr_prior("spline")  # other methods do not need the weights
