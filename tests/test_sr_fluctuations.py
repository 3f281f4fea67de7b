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
    for apod in (0.0, 0.1):
        kspace = AcquisitionModel(slice_axis=2, profile="box", inplane="kspace", apodisation=apod)
        ops = psf_upsample_operators(coarse, fine, kspace)
        for ax in (0, 1):  # band-limited: the axis's own B undoes it (B P B = B; B P = I untapered)
            b = axis_matrix(fine[ax], coarse[ax], "kspace", apodisation=apod)
            np.testing.assert_allclose(b @ ops[ax] @ b, b, atol=1e-6)
            if apod == 0:
                np.testing.assert_allclose(b @ ops[ax], np.eye(coarse[ax]), atol=1e-6)
            assert not np.allclose(ops[ax], spline[ax], atol=1e-3)
    np.testing.assert_array_equal(ops[2], spline[2])  # the slice axis keeps the spline
    box = AcquisitionModel(slice_axis=2, profile="box", inplane="box")
    for a, b in zip(psf_upsample_operators(coarse, fine, box), spline):  # voxel averaging: spline
        np.testing.assert_array_equal(a, b)


def test_fluct_init_is_a_known_hyper_parameter_of_every_variant():
    """train_tvsr rejects unknown hyper-parameters: ``--hyper fluct_init=psf`` once failed that way."""
    from bids_boldsr.sr.tvsr.train import DEFAULTS

    for variant in ("tvsr", "prior"):  # the variants with the static model ("published": per volume)
        assert DEFAULTS[variant]["fluct_init"] == "spline", variant
