"""The static temporal model's fluctuation interpolation (``fluct_init``, issue 10)."""
import numpy as np

from bids_boldsr.sr.interpolate import apply_axis_operators
from bids_boldsr.sr.tvsr.acquisition import AcquisitionModel, axis_matrix
from bids_boldsr.sr.tvsr.resample import psf_upsample_operators, upsample, upsample_operators


def test_spline_operators_are_upsample():
    vol = np.random.default_rng(0).normal(size=(12, 10, 7)).astype(np.float32)
    ops = upsample_operators(vol.shape, (24, 20, 14))
    np.testing.assert_array_equal(apply_axis_operators(vol, ops), upsample(vol, (24, 20, 14)))


def test_psf_interpolation_inverts_kspace_axes_and_keeps_spline_elsewhere():
    coarse, fine = (12, 10, 7), (24, 20, 14)
    spline = upsample_operators(coarse, fine)
    for apod in (0.0, 0.15):  # the taper is not inverted: 0.15 once gave NaN volumes (mixed draw 2)
        kspace = AcquisitionModel(slice_axis=2, profile="box", inplane="kspace", apodisation=apod)
        ops = psf_upsample_operators(coarse, fine, kspace)
        for ax in (0, 1):  # band-limited: the axis's own untapered B undoes it exactly
            b = axis_matrix(fine[ax], coarse[ax], "kspace")
            np.testing.assert_allclose(b @ ops[ax], np.eye(coarse[ax]), atol=1e-6)
            assert np.abs(ops[ax]).max() < 2 and not np.allclose(ops[ax], spline[ax], atol=1e-3)
    np.testing.assert_array_equal(ops[2], spline[2])  # the slice axis keeps the spline
    box = AcquisitionModel(slice_axis=2, profile="box", inplane="box")
    for a, b in zip(psf_upsample_operators(coarse, fine, box), spline):  # voxel averaging: spline
        np.testing.assert_array_equal(a, b)


def test_fluct_init_is_a_known_hyper_parameter_of_every_variant():
    """train_tvsr rejects unknown hyper-parameters: ``--hyper fluct_init=psf`` once failed that way."""
    from bids_boldsr.sr.tvsr.train import DEFAULTS

    assert DEFAULTS["tvsr"]["fluct_init"] == "spline"  # the static-model variants ("published": per volume)
    assert DEFAULTS["prior"]["fluct_init"] == "psf" and DEFAULTS["prior"]["fluct_dc_iters"] == 50


def test_non_finite_sr_output_is_an_error_not_a_volume(monkeypatch):
    """A numerically broken reconstruction (as the psf start once gave on apodised k-space) stops the
    run instead of being written."""
    import pytest

    import bids_boldsr.sr.tvsr.infer as infer
    from bids_boldsr.sr.apply import volume_method

    monkeypatch.setattr(infer, "load_tvsr", lambda *a, **k: type("M", (), {"precision": "float32"})())

    def broken(model, run_mean):
        def f(vol, affine):
            return np.full((4, 4, 4), np.nan, np.float32)
        f.provenance = {}
        return f
    monkeypatch.setattr(infer, "run_super_resolver", broken)
    run = volume_method("tvsr-prior", "ckpt.pt")
    with pytest.raises(FloatingPointError, match="non-finite"):
        run(np.ones((2, 2, 2), np.float32), np.eye(4), (4, 4, 4), np.eye(4))
