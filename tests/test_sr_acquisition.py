"""The acquisition model B and the isotropic TV term on hand-checkable inputs."""
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from bids_boldsr.sr.tvsr import AcquisitionModel, acquisition_from_image, total_variation
from bids_boldsr.sr.tvsr.acquisition import axis_matrix, coarse_shape_for

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def test_constant_stays_constant_at_all_factors():
    for model in (AcquisitionModel(), AcquisitionModel(slice_axis=None, profile="box"),
                  AcquisitionModel(thickness_ratio=0.9)):
        for coarse in [(4, 4, 3), (6, 5, 4)]:
            out = model.apply(np.full((9, 8, 6), 7.0), coarse)
            assert out.shape == coarse
            np.testing.assert_allclose(out, 7.0, rtol=1e-6)


def test_box_is_block_average_at_integer_factor():
    vol = np.arange(4 * 4 * 2, dtype=float).reshape(4, 4, 2)
    out = AcquisitionModel(slice_axis=None, profile="box").apply(vol, (2, 2, 1))
    expected = vol.reshape(2, 2, 2, 2, 1, 2).mean(axis=(1, 3, 5))
    np.testing.assert_allclose(out, expected, rtol=1e-6)


def test_box_area_weights_at_factor_one_and_a_half():
    # 3 fine voxels -> 2 coarse voxels of width 1.5: the middle voxel is split half/half
    np.testing.assert_allclose(axis_matrix(3, 2, "box"), [[2 / 3, 1 / 3, 0], [0, 1 / 3, 2 / 3]])
    line = np.array([3.0, 6.0, 9.0])
    vol = np.broadcast_to(line[:, None, None], (3, 2, 2))
    out = AcquisitionModel(slice_axis=None, profile="box").apply(vol, (2, 2, 2))
    np.testing.assert_allclose(out[:, 0, 0], [(3 + 0.5 * 6) / 1.5, (0.5 * 6 + 9) / 1.5], rtol=1e-6)


def test_gaussian_slice_profile_matches_fwhm():
    # a point source on the slice axis spreads as a Gaussian whose FWHM is the slice thickness
    mat = axis_matrix(64, 32, "gaussian", fwhm=2.0)
    row = mat[16]
    centre = (16 - 15.5) * 2 + 31.5  # fine index of coarse voxel 16
    positions = np.arange(64)
    sigma = np.sqrt((row * (positions - centre) ** 2).sum())
    assert sigma == pytest.approx(2.0 / 2.3548, rel=0.08)  # (binning adds 1/12 voxel^2 of variance)
    assert (row * positions).sum() == pytest.approx(centre, abs=1e-6)


def test_adjoint_and_torch_operator_agree_with_numpy():
    rng = np.random.default_rng(0)
    model = AcquisitionModel(thickness_ratio=0.9)
    y, x = rng.random((9, 8, 7)), rng.random((6, 5, 4))
    assert (model.apply(y, x.shape) * x).sum() == pytest.approx((y * model.adjoint(x, y.shape)).sum(), rel=1e-5)
    op = model.torch_operator(y.shape, x.shape)
    out = op(torch.as_tensor(y, dtype=torch.float32)[None, None])[0, 0].numpy()
    np.testing.assert_allclose(out, model.apply(y, x.shape), rtol=1e-5, atol=1e-6)
    assert coarse_shape_for((64, 64, 33), 1.5) == (43, 43, 22)


def test_slice_profile_from_real_header_and_sidecar():
    bold = DATA / "ds-forrest" / "sub-02" / "func" / "sub-02_task-oneback_run-1_bold.nii.gz"
    if not bold.exists():
        pytest.skip(f"real data not found at {DATA} (../shared/data next to the repository)")
    sidecar = json.loads(bold.with_name(bold.name.replace(".nii.gz", ".json")).read_text())
    model = acquisition_from_image(nib.load(bold), sidecar)
    assert model.slice_axis == 2
    assert model.thickness_ratio == pytest.approx(3.0 / 3.3)  # SliceThickness / SpacingBetweenSlices


def test_total_variation_hand_computed():
    # ramp y = i + 2j + 3k: every forward-difference gradient is (1, 2, 3); 2x2x2 voxels have all
    # three forward neighbours, so TV = 8 * sqrt(1 + 4 + 9)
    i, j, k = np.meshgrid(np.arange(3), np.arange(3), np.arange(3), indexing="ij")
    y = torch.as_tensor(i + 2 * j + 3 * k, dtype=torch.float64)
    assert total_variation(y, eps=0.0).item() == pytest.approx(8 * np.sqrt(14))
    assert total_variation(y, eps=0.0, reduction="mean").item() == pytest.approx(np.sqrt(14))
    # isotropic, not squared: a single step of height 2 costs 2, not 4
    step = torch.zeros(2, 2, 2, dtype=torch.float64)
    step[1] = 2.0
    assert total_variation(step, eps=0.0).item() == pytest.approx(2.0)


@pytest.mark.parametrize("n_fine,n_coarse", [(64, 32), (63, 42), (80, 40), (66, 33)])
def test_kspace_truncation_keeps_the_band_and_removes_the_rest(n_fine, n_coarse):
    # a sinusoid inside the coarse band is sampled exactly at the coarse centres; one above is removed
    mat = axis_matrix(n_fine, n_coarse, "kspace")
    centres = (np.arange(n_coarse) - (n_coarse - 1) / 2) * n_fine / n_coarse + (n_fine - 1) / 2
    line = np.arange(n_fine)
    for freq in (0, 3, n_coarse // 2 - 1):
        np.testing.assert_allclose(mat @ np.cos(2 * np.pi * freq * line / n_fine + 0.3),
                                   np.cos(2 * np.pi * freq * centres / n_fine + 0.3), atol=1e-9)
    np.testing.assert_allclose(mat @ np.cos(2 * np.pi * (n_coarse // 2 + 2) * line / n_fine), 0, atol=1e-9)
    # apodisation tapers the edge of the band but keeps constants
    tapered = axis_matrix(n_fine, n_coarse, "kspace", apodisation=0.5)
    edge = np.cos(2 * np.pi * (n_coarse // 2 - 1) * line / n_fine)
    assert np.abs(tapered @ edge).max() < 0.5 * np.abs(mat @ edge).max()
    np.testing.assert_allclose(tapered.sum(1), 1, atol=1e-9)


def test_box_slice_profile_follows_thickness():
    # 2-voxel slices at 0.5 thickness ratio: each covers the middle fine voxel of its 3, a slice gap
    np.testing.assert_allclose(axis_matrix(6, 2, "box", fwhm=1.0), [[0, 1, 0, 0, 0, 0], [0, 0, 0, 0, 1, 0]],
                               atol=1e-12)
    gap = AcquisitionModel(slice_axis=2, thickness_ratio=0.5, profile="box", inplane="kspace")
    np.testing.assert_allclose(gap.apply(np.full((8, 8, 4), 3.0), (4, 4, 2)), 3.0, rtol=1e-6)
