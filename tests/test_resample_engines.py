"""The all-core, compiled (numba) and torch resampling engines against the one-thread scipy one, on real BOLD (ds-xa30)."""
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


def _torch_sample(vol, vox, order):
    import torch

    from bids_boldsr.registration.spline import Coefficients, sample

    return sample(Coefficients(vol, order=order), torch.from_numpy(vox)).numpy()


def _compiled_sample(vol, vox, order, matrix=None):
    from bids_boldsr.registration import kernel

    m = np.eye(4) if matrix is None else matrix
    pts = vox.T if matrix is None else np.linalg.solve(m[:3, :3], vox - m[:3, 3:4]).T
    return kernel.sample_points(kernel.coefficients(vol, order), vol.shape, pts.astype(np.float32), m, order)


def test_compiled_kernel_maps_world_points_through_the_matrix():
    """The kernel's voxel coordinate is M p (float64 arithmetic on float32 points)."""
    from bids_boldsr.registration import kernel

    vol = _bold(1)[0][..., 0]
    m = np.eye(4)
    m[:3, :3] = [[0.9, 0.1, 0.0], [0.0, 1.1, 0.05], [0.02, 0.0, 0.95]]
    m[:3, 3] = [0.5, -0.3, 0.2]
    pts = np.random.default_rng(2).uniform(-3, 70, (5000, 3)).astype(np.float32)
    vox = m[:3, :3] @ pts.T.astype(np.float64) + m[:3, 3:4]
    ref = ndimage.map_coordinates(ndimage.spline_filter(vol, 3), vox, order=3, mode="constant", prefilter=False)
    out = kernel.sample_points(kernel.coefficients(vol, 3), vol.shape, pts, m, 3)
    assert np.abs(out - ref).max() < 2e-5 * np.abs(ref).max()
    assert (ref == 0).mean() > 0.05 and (ref != 0).mean() > 0.3


@pytest.mark.parametrize("shape", [None, (5, 1, 7), (2, 3, 4)])
def test_compiled_prefilter_equals_scipy_spline_filter(shape):
    """The all-core prefilter gives scipy's mirror-boundary cubic coefficients (float32 storage
    between axes), on a real volume and on axes of length 1 and 2; then the mirrored pad."""
    from bids_boldsr.registration import kernel

    vol = _bold(1)[0][..., 0] if shape is None else np.random.default_rng(4).normal(50, 9, shape)
    vol = vol.astype(np.float32)
    ref = ndimage.spline_filter(vol, order=3)  # float64 throughout
    coef = kernel.coefficients(vol, 3)
    inner = coef[kernel.PAD:-kernel.PAD, kernel.PAD:-kernel.PAD, kernel.PAD:-kernel.PAD]
    assert coef.dtype == np.float32 and inner.shape == vol.shape
    assert np.abs(inner - ref).max() < 1e-6 * np.abs(ref).max()
    assert np.array_equal(coef, np.pad(inner, kernel.PAD, mode="reflect"))


@pytest.mark.parametrize("engine", ["torch", "numba"])
def test_spline_kernels_equal_scipy_map_coordinates(engine):
    """Cubic and linear sampling = scipy's mode='constant' values (float32 rounding), edges
    included: exactly 0 and n-1 are inside, any point beyond is cval."""
    vol = _bold(1)[0][..., 0] + 100.0  # no zero inside the grid: zero means "outside"
    rng = np.random.default_rng(0)
    n = np.array(vol.shape)
    vox = rng.uniform(-1.5, n[:, None] + 0.5, (3, 20000))
    edges = np.array([[0, 0, 0], n - 1, [-1e-3, 5, 5], [5, 5, n[2] - 1 + 1e-3], [0.0, n[1] - 1, 7.5]]).T
    vox = np.concatenate([vox, edges], 1).astype(np.float32)
    for order in (3, 1):
        coef_np = ndimage.spline_filter(vol, order=3) if order == 3 else vol
        out = (_torch_sample if engine == "torch" else _compiled_sample)(vol, vox, order)
        ref = ndimage.map_coordinates(coef_np, vox, order=order, mode="constant", prefilter=False)
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
    for engine in ("scipy", "threads", "torch", "numba"):
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


@pytest.mark.parametrize("engine", ["torch", "numba"])
@pytest.mark.parametrize("order", [3, 1])
def test_float32_engines_within_one_int16_step(series, order, engine):
    ref, test = series["scipy", order], series[engine, order]
    a, b = np.asarray(ref.dataobj, np.float64), np.asarray(test.dataobj, np.float64)
    step = float(ref.dataobj.slope)
    signal = np.abs(a[a != 0]).mean()
    diff = np.abs(a - b)
    assert diff.max() <= step * 1.01  # rounding to the same int16 grid
    assert diff.mean() / signal < 1e-5
    assert ((a == 0) == (b == 0)).mean() > 0.99999


def test_auto_engine_and_unknown_engine():
    assert pick_engine("auto", "cpu") == "numba"  # numba is a dependency
    assert pick_engine("auto", "cpu", order=0) == "threads"  # nearest: scipy's calls
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


def test_gzip_members_read_back_as_one_stream(tmp_path):
    """The writer's .nii.gz is a header member and one gzip member per volume: nibabel, Python's
    gzip and gunzip read it as one file with the written values; the bytes are reproducible."""
    import gzip
    import subprocess

    from bids_boldsr.nifti import StreamingNiftiWriter

    data = np.random.default_rng(3).normal(100, 20, (7, 6, 5, 3)).astype(np.float32)
    paths = [tmp_path / "a.nii.gz", tmp_path / "b.nii.gz"]
    for path in paths:
        with StreamingNiftiWriter(path, data.shape, np.eye(4), dtype=np.int16, scale=0.01) as w:
            encoded = [w.encode(data[..., t], t) for t in range(3)]  # as the threads do
            for blob in encoded:
                w.write_encoded(blob)
    raw = paths[0].read_bytes()
    assert raw == paths[1].read_bytes() and raw.count(b"\x1f\x8b\x08") >= 4
    back = np.asarray(nib.load(paths[0]).dataobj)
    assert np.abs(back - data).max() <= 0.005 + 1e-6
    assert gzip.decompress(raw) == subprocess.run(["gunzip", "-c", str(paths[0])], capture_output=True,
                                                  check=True).stdout


@pytest.mark.parametrize("order", [1, 3, 0])
def test_resample_compiled_equals_resample(order):
    """The report figures' resampler (compiled kernel, slab by slab) gives registration.resample's
    values within float32 rounding through a chain onto a finer grid; order 0 is resample itself."""
    from bids_boldsr.registration.resample import resample, resample_compiled

    vols, affine = _bold(1)
    vol = vols[..., 0]
    shape, ref_affine = sr_target_grid(vol.shape, affine, factor=1.5)
    chain = [_rigid(np.random.default_rng(7))]
    ref = resample(vol, affine, shape, ref_affine, chain, order=order)
    out = resample_compiled(vol, affine, shape, ref_affine, chain, order=order, max_points=50000)
    assert out.shape == tuple(shape) and out.dtype == np.float32
    assert np.abs(out - ref).max() <= 2e-5 * np.abs(ref).max()
    inside = ref != 0
    assert inside.mean() > 0.3 and (out[~inside] == 0).mean() > 0.99
