"""Short self-supervised training on a crop of a real BOLD run; checkpoint, caching, inference."""
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from bids_boldsr.bench.sr import simulation_grids
from bids_boldsr.sr.grid import sr_target_grid
from bids_boldsr.nifti import StreamingNiftiWriter
from bids_boldsr.sr.tvsr import AcquisitionModel, load_tvsr, super_resolve_volume, train_tvsr, tvsr_metadata

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
BOLD = DATA / "ds-xa30" / "sub-01" / "func" / "sub-01_task-fa_run-1_bold.nii.gz"


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    """The first 6 volumes of the real XA30 run at half resolution (32x32x16, whole head), as
    simulated by the acquisition model; written to a temporary folder, never the repo."""
    if not BOLD.exists():
        pytest.skip(f"real data not found at {DATA} (../shared/data next to the repository)")
    torch.set_num_threads(1)
    img = nib.load(BOLD)
    hr_shape, lr_shape, lr_affine, _ = simulation_grids(img.shape, img.affine, 2)
    hr = np.asarray(img.dataobj[:hr_shape[0], :hr_shape[1], :hr_shape[2], :6], dtype=np.float32)
    lr = np.stack([AcquisitionModel().apply(hr[..., t], lr_shape) for t in range(6)], -1)
    path = tmp_path_factory.mktemp("run") / "sub-01_task-fa_bold.nii.gz"
    nib.save(nib.Nifti1Image(lr, lr_affine), path)
    return path


@pytest.fixture(scope="module")
def checkpoint(small_run, tmp_path_factory):
    return train_tvsr([small_run], factor=2, sloppy=True, out_dir=tmp_path_factory.mktemp("ckpt"),
                      steps=60, val_every=10, patience=100)


def test_short_training_lowers_the_held_out_loss(checkpoint):
    training = torch.load(checkpoint, weights_only=False)["training"]
    history = dict(training["history"])
    assert history[0] > 0  # step 0: the spline input itself
    assert training["val_mse"] < 0.95 * history[0]  # measured: 0.85 after 60 steps
    assert training["steps_run"] == 60


def test_checkpoint_is_cached_and_training_deterministic(small_run, checkpoint, tmp_path):
    mtime = checkpoint.stat().st_mtime_ns
    again = train_tvsr([small_run], factor=2, sloppy=True, out_dir=checkpoint.parent,
                       steps=60, val_every=10, patience=100)
    assert again == checkpoint and again.stat().st_mtime_ns == mtime  # not retrained
    other = train_tvsr([small_run], factor=2, sloppy=True, out_dir=tmp_path, steps=60, val_every=10, patience=100)
    meta, meta_other = tvsr_metadata(checkpoint), tvsr_metadata(other)
    assert meta["WeightsSHA256"] == meta_other["WeightsSHA256"]  # same seed on CPU: same weights
    assert meta["Variant"] == "tvsr" and meta["Factor"] == 2 and meta["Seed"] == 0
    assert meta["AcquisitionModel"]["slice_axis"] == 2 and meta["TrainingSteps"] == 60


def test_published_variant_trains(small_run, tmp_path):
    ckpt = train_tvsr([small_run], factor=1.5, variant="published", sloppy=True, out_dir=tmp_path)
    model = load_tvsr(ckpt, "cpu")
    assert model.net.layers == 10 and tvsr_metadata(ckpt)["Alpha"] == 0.01
    vol = np.asarray(nib.load(small_run).dataobj[..., 0], np.float32)
    assert super_resolve_volume(model, vol, nib.load(small_run).affine).shape == (48, 48, 24)


def test_streamed_and_tiled_inference_equal_in_memory(small_run, checkpoint, tmp_path):
    model = load_tvsr(checkpoint, "cpu")
    img = nib.load(small_run)
    shape, affine = sr_target_grid(img.shape[:3], img.affine, factor=2)
    vols = [np.asarray(img.dataobj[..., t], np.float32) for t in range(2)]
    in_memory = np.stack([super_resolve_volume(model, v, img.affine) for v in vols], -1)
    assert in_memory.shape == tuple(shape) + (2,)
    out = tmp_path / "sr_bold.nii.gz"
    model.max_voxels = 40 ** 3  # force overlapping tiles (the volume is 64x64x32)
    with StreamingNiftiWriter(out, tuple(shape) + (2,), affine) as writer:
        for v in vols:
            writer.write_volume(super_resolve_volume(model, v, img.affine))
    streamed = nib.load(out)
    np.testing.assert_allclose(streamed.affine, affine, atol=1e-5)
    np.testing.assert_allclose(streamed.get_fdata(dtype=np.float32), in_memory, rtol=1e-5, atol=1e-3)


def test_device_auto_falls_back_to_cpu():
    from bids_boldsr.devices import resolve_device
    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu") == "cpu"


def test_static_temporal_model_is_the_mean_sr_plus_a_linear_time_course(small_run, checkpoint):
    """tvsr's default ``temporal="static"``: the network sees only the run's mean, so each volume's
    deviation from the first is the data-consistent spline of the LR deviation (linear in the data)."""
    from bids_boldsr.nifti import series_stats
    from bids_boldsr.sr.tvsr.common import data_consistency
    from bids_boldsr.sr.tvsr.infer import run_super_resolver
    from bids_boldsr.sr.tvsr.resample import upsample

    model = load_tvsr(checkpoint)
    hyper = model.config["hyper"]
    assert hyper["temporal"] == "static" and hyper["fluct_dc_iters"] == 10
    img = nib.load(small_run)
    mean = series_stats(img)[1]
    assert np.allclose(mean, np.asarray(img.dataobj, np.float64).mean(-1), atol=1e-3)
    run = run_super_resolver(model, mean)
    vols = [np.asarray(img.dataobj[..., t], np.float32) for t in (0, 3)]
    y0, y3 = (run(v, img.affine) for v in vols)
    mean_sr = super_resolve_volume(model, mean, img.affine, "head")
    assert np.allclose(run(mean, img.affine), mean_sr, atol=1e-4 * np.abs(mean_sr).max())
    d = vols[1] - vols[0]
    expected = data_consistency(upsample(d, y0.shape, order=3), d, model.acquisition, 10)
    assert np.abs((y3 - y0) - expected).max() < 1e-3 * np.abs(mean_sr).max()
    assert np.abs(y3 - y0).max() > 0.01 * np.abs(mean_sr).max()  # the time course is kept
    with pytest.raises(ValueError, match="temporal mean"):
        run_super_resolver(model)


def test_bench_sr_infer_matches_the_040_path_inside_the_head_box(small_run, checkpoint, tmp_path):
    import json

    from bids_boldsr.bench import main as bench

    def bench_json(precision):
        out = tmp_path / f"infer-{precision}.json"
        assert bench(["sr-infer", str(small_run), "--checkpoint", str(checkpoint), "--volumes", "2",
                      "--threads", "1", "--precision", precision, "--out", str(out)]) == 0
        return json.loads(out.read_text())

    # float32 everywhere: the same estimate as 0.4.0 up to float rounding, on any CPU
    result = bench_json("float32")
    assert result["precision"] == "float32"
    assert result["sr_shape"] == [64, 64, 32] and result["dc_iterations"] == 50
    assert result["max_diff_in_box_pct"] < 1e-3  # float rounding only
    assert result["max_diff_outside_box_pct"] < 1.0
    assert 0 < result["head_box_fraction"] <= 1 and result["speedup"] > 0
    assert result["static"]["run_volumes"] == 6 and result["static"]["s_per_volume"] > 0
    # bfloat16 (what --precision auto picks on CPUs with native bf16, e.g. the CI machine): only the
    # network's correction is rounded, so the output stays within a fraction of a percent
    bf16 = bench_json("bfloat16")
    assert bf16["precision"] == "bfloat16"
    assert 1e-4 < bf16["max_diff_in_box_pct"] < 1.0 and bf16["mean_diff_in_box_pct"] < 0.05
