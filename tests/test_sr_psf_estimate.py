"""Estimating the run's PSF from the data (for data consistency) and the mirror-image mean."""

from dataclasses import asdict

import nibabel as nib
import numpy as np
import pytest
import torch
from scipy import ndimage

from conftest import shared
from bids_boldsr.sr.tvsr.acquisition import AcquisitionModel, coarse_shape_for
from bids_boldsr.sr.tvsr.infer import FLIPS, TVSRModel, _flip_box, network_output
from bids_boldsr.sr.tvsr.model import ResidualCNN
from bids_boldsr.sr.tvsr.psf_estimate import estimate_acquisition, estimate_record
from bids_boldsr.sr.tvsr.psf_family import family_grid


@pytest.fixture(scope="module")
def hr():
    img = nib.load(shared("ds-xa30", "sub-01", "func", "sub-01_task-fa_run-1_bold.nii.gz"))
    vol = np.asarray(img.dataobj[..., 0], np.float32)
    return vol / np.percentile(vol, 99)


ASSUMED = AcquisitionModel(slice_axis=2, thickness_ratio=1.0, profile="gaussian")


@pytest.mark.parametrize("truth", [
    AcquisitionModel(slice_axis=2, inplane="kspace", apodisation=0.25, profile="box", thickness_ratio=1.2),
    AcquisitionModel(slice_axis=2, inplane="box", profile="gaussian", thickness_ratio=0.9),
    AcquisitionModel(slice_axis=2, inplane="kspace", apodisation=0.5, profile="gaussian", thickness_ratio=1.3),
])
def test_the_true_psf_is_found_given_the_fine_image(hr, truth):
    """With the fine image itself as the estimate, the family member that made the LR volume is the
    one chosen (residual 0), against 70-odd others, whatever the header assumed."""
    lr = truth.apply(hr, coarse_shape_for(hr.shape, 2))
    chosen, table, calibration = estimate_acquisition(hr, lr, ASSUMED)
    assert chosen == truth and table[0][0] < 1e-6 < table[1][0] and calibration is None
    assert len(table) == len(family_grid(ASSUMED)) > 70
    record = estimate_record(table)
    assert record["EstimatedAcquisitionModel"]["inplane"] == truth.inplane
    assert [c["residual"] for c in record["AcquisitionModelCandidates"]] == sorted(
        c["residual"] for c in record["AcquisitionModelCandidates"])


def _sharpen_z(u, amount=0.3):
    """A prior's typical bias for the narrowest PSFs: the estimate is too sharp through-plane."""
    return u + amount * (u - ndimage.gaussian_filter1d(u, 1.0, axis=2))


@pytest.mark.parametrize("truth", [
    AcquisitionModel(slice_axis=2, inplane="kspace", profile="box", thickness_ratio=1.0),
    AcquisitionModel(slice_axis=2, inplane="box", profile="box", thickness_ratio=1.0),
    AcquisitionModel(slice_axis=2, inplane="kspace", apodisation=0.25, profile="gaussian", thickness_ratio=0.9),
])
def test_calibration_undoes_the_bias_of_an_over_sharp_estimate(hr, truth):
    """An estimate too sharp along the slices makes the least residual prefer a wider slice profile
    than the truth; simulating each candidate through the same (biased) prior finds the truth."""
    lr = truth.apply(hr, coarse_shape_for(hr.shape, 2))
    y = _sharpen_z(hr)
    plain, _, none = estimate_acquisition(y, lr, ASSUMED)
    chosen, table, calibration = estimate_acquisition(y, lr, ASSUMED, lambda x_sim: _sharpen_z(y), 8)
    assert none is None and plain != truth and plain == table[0][1]
    assert chosen == truth and calibration["chosen"] == asdict(truth)
    assert len(calibration["simulated"]) == len(calibration["same_least_residual"]) == 8
    record = estimate_record(table, calibration)
    assert record["EstimatedAcquisitionModel"] == asdict(truth)
    assert record["AcquisitionModelCandidates"][0]["profile"] == plain.profile  # the least residual, kept
    assert record["AcquisitionModelCalibration"]["least_residual"] == asdict(plain)


def test_calibration_keeps_an_unbiased_estimate(hr):
    """With the fine image itself as the estimate (an unbiased prior), only the truth's simulation
    puts the truth first, so calibration keeps the least residual."""
    truth = AcquisitionModel(slice_axis=2, inplane="kspace", apodisation=0.125, profile="box", thickness_ratio=1.2)
    lr = truth.apply(hr, coarse_shape_for(hr.shape, 2))
    chosen, table, calibration = estimate_acquisition(hr, lr, ASSUMED, lambda x_sim: hr, 6)
    assert chosen == truth == table[0][1]
    assert calibration["same_least_residual"] == [True] + [False] * 5


def test_the_header_model_is_a_candidate_and_no_slice_axis_means_no_profile():
    odd = AcquisitionModel(slice_axis=2, thickness_ratio=0.95, profile="gaussian")
    assert odd in family_grid(odd) and odd not in family_grid(ASSUMED)
    iso = family_grid(AcquisitionModel(slice_axis=None))
    assert {(c.profile, c.thickness_ratio) for c in iso} == {("gaussian", 1.0)}
    assert {c.inplane for c in iso} == {"box", "kspace"}


def _model(ensemble):
    torch.manual_seed(0)
    net = ResidualCNN(1, 4, 3, zero_init=False).eval()
    return TVSRModel(net, {"hyper": {"flip_ensemble": ensemble}}, ASSUMED, torch.device("cpu"), "", {})


def test_the_mirror_image_mean_is_equivariant_and_keeps_the_box(hr):
    """An ensemble over all 8 mirror images commutes with mirroring (one pass does not), and the
    head box is mirrored with the volume: outside it the input comes back unchanged."""
    inp = hr[:40, :36, :20].copy()
    box = (slice(3, 30), slice(5, 33), slice(2, 15))
    for axes in FLIPS[1:]:
        flipped = np.ascontiguousarray(np.flip(inp, axes))
        mirrored = np.flip(network_output(_model(8), inp, box), axes)
        assert np.allclose(network_output(_model(8), flipped, _flip_box(box, inp.shape, axes)), mirrored, atol=1e-5)
    one = network_output(_model(1), inp, box)
    assert not np.allclose(np.flip(network_output(_model(1), np.ascontiguousarray(np.flip(inp, 0)),
                                                  _flip_box(box, inp.shape, (0,))), 0), one, atol=1e-4)
    out = network_output(_model(8), inp, box)
    outside = np.ones(inp.shape, bool)
    outside[box] = False
    assert np.allclose(out[outside], inp[outside], rtol=1e-6, atol=0) and not np.allclose(out[box], inp[box])
