"""The all-core and torch resampling engines against the one-thread scipy one, on real BOLD (ds-xa30)."""
from __future__ import annotations

import io

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from bids_boldsr.progress import Progress
from bids_boldsr.registration.apply import pick_engine, resample_series
from bids_boldsr.sr.grid import sr_target_grid

from conftest import shared

XA30 = ("ds-xa30", "sub-01", "func", "sub-01_task-fa_run-1_bold.nii.gz")


def _bold(n=None):
    img = nib.load(shared(*XA30))
    data = np.asarray(img.dataobj, dtype=np.float32)
    return data if n is None else data[..., :n], img.affine


def test_torch_spline_equals_scipy_map_coordinates():
    """Cubic and linear torch sampling = scipy's mode='constant' values (float32 rounding), edges
    included: exactly 0 and n-1 are inside, any point beyond is cval."""
    import torch

    from bids_boldsr.registration.spline import Coefficients, sample

    vol = _bold(1)[0][..., 0] + 100.0  # no zero inside the grid: zero means "outside"
    rng = np.random.default_rng(0)
    n = np.array(vol.shape)
    vox = rng.uniform(-1.5, n[:, None] + 0.5, (3, 20000))
    edges = np.array([[0, 0, 0], n - 1, [-1e-3, 5, 5], [5, 5, n[2] - 1 + 1e-3], [0.0, n[1] - 1, 7.5]]).T
    vox = np.concatenate([vox, edges], 1).astype(np.float32)
    vt = torch.from_numpy(vox)
    for order in (3, 1):
        coef_np = ndimage.spline_filter(vol, order=3) if order == 3 else vol
        ref = ndimage.map_coordinates(coef_np, vox, order=order, mode="constant", prefilter=False)
        out = sample(Coefficients(vol, order=order), vt).numpy()
        scale = float(np.abs(ref).max())
        assert np.abs(out - ref).max() < 2e-5 * scale, order
        assert ((out == 0) == (ref == 0)).all()
        assert out[-5] != 0 and out[-4] != 0 and out[-3] == 0 and out[-2] == 0 and out[-1] != 0
    assert ((ref == 0).mean() > 0.05) and ((ref != 0).mean() > 0.5)  # both cases were exercised


def _rigid(rng, mm=1.0, deg=2.0):
    from bids_boldsr.bench.resample import _rigid as rigid

    return rigid(rng, mm, deg)


@pytest.fixture(scope="module")
def series(tmp_path_factory):
    """4 volumes of ds-xa30 on a 2.5 mm grid with per-volume motion: written by each engine."""
    data, aff = _bold(4)
    tmp = tmp_path_factory.mktemp("engines")
    src = tmp / "bold.nii.gz"
    nib.save(nib.Nifti1Image(data, aff), src)
    shape, out_aff = sr_target_grid(data.shape[:3], aff, voxel_size=(2.5, 2.5, 2.5))
    rng = np.random.default_rng(1)
    chain = [_rigid(rng, 2.0, 5.0)]
    motion = np.stack([_rigid(rng) for _ in range(data.shape[3])])
    outs = {}
    for engine in ("scipy", "threads", "torch"):
        for order in (3, 1):
            out = tmp / f"{engine}{order}.nii.gz"
            info = resample_series(src, out, shape, out_aff, chain, motion, order=order, progress=False,
                                   engine=engine, threads=2, chunk=40000)
            assert info["engine"] == engine and info["volumes"] == 4
            outs[engine, order] = nib.load(out)
    return outs


@pytest.mark.parametrize("order", [3, 1])
def test_threads_engine_writes_the_scipy_values(series, order):
    ref, test = series["scipy", order], series["threads", order]
    a, b = np.asarray(ref.dataobj), np.asarray(test.dataobj)
    assert a.shape == b.shape and a.shape[3] == 4
    assert np.array_equal(a, b)
    assert (a != 0).mean() > 0.3  # the brain is inside the grid


@pytest.mark.parametrize("order", [3, 1])
def test_torch_engine_within_one_int16_step(series, order):
    ref, test = series["scipy", order], series["torch", order]
    a, b = np.asarray(ref.dataobj, np.float64), np.asarray(test.dataobj, np.float64)
    step = float(ref.dataobj.slope)
    signal = np.abs(a[a != 0]).mean()
    diff = np.abs(a - b)
    assert diff.max() <= step * 1.01  # rounding to the same int16 grid
    assert diff.mean() / signal < 1e-5
    assert ((a == 0) == (b == 0)).mean() > 0.99999


def test_auto_engine_and_unknown_engine():
    assert pick_engine("auto", "cpu") == "threads"
    assert pick_engine("auto", "cuda") == "torch"
    with pytest.raises(ValueError, match="unknown resampling engine"):
        pick_engine("cubic")


def test_progress_line_counts_eta_and_throttles():
    now = [0.0]
    out = io.StringIO()
    meter = Progress("resample x", 10, unit="vol", stream=out, interval=5.0, clock=lambda: now[0])
    for i in range(1, 11):
        now[0] = 2.0 * i
        meter.update(i)
    lines = out.getvalue().splitlines()
    # a log (not a terminal): the first update, then one line per >= 5 s, and the last one
    assert lines[0] == "resample x: vol 1/10 (10%) 0:02 elapsed, ETA 0:18"
    assert [ln.split()[3] for ln in lines] == ["1/10", "4/10", "7/10", "10/10"]
    assert lines[-1].endswith("0:20 elapsed, 0.50 vol/s")


def test_step_hook_restarts_per_task(monkeypatch):
    from bids_boldsr import progress

    out = io.StringIO()
    monkeypatch.setattr(progress.sys, "stderr", out)
    for i in (1, 2, 3):
        progress.step("sr train", i, 3)
    for i in (1, 2):
        progress.step("sr infer", i, 2, unit="vol")
    text = out.getvalue()
    assert "sr train: step 1/3" in text and "sr train: step 3/3 (100%)" in text
    assert "sr infer: vol 2/2" in text and "sr train" not in progress._METERS
