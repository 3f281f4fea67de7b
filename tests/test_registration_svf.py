"""Diffeomorphic SVF: invertibility of scaling and squaring, recovery of a known warp."""
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from scipy import ndimage

from bids_boldsr.registration.field import jacobian_determinant
from bids_boldsr.registration.resample import grid_points, map_points, resample
from bids_boldsr.registration.svf import fields_from_velocity, register_diffeomorphic

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
T1W = DATA / "labelled" / "vxm-subj_T1w.nii.gz"
torch.set_num_threads(1)


def smooth_velocity(shape, spacing, amplitude_mm, sigma_vox, seed=0):
    rng = np.random.default_rng(seed)
    v = np.stack([ndimage.gaussian_filter(rng.normal(size=shape), sigma_vox) for _ in range(3)], -1)
    v *= amplitude_mm / np.abs(v).max()
    taper = np.ones(shape)  # zero velocity at the border: the field stays inside the grid
    for axis, n in enumerate(shape):
        ramp = np.minimum(np.arange(n), np.arange(n)[::-1]).astype(float)
        taper *= np.clip(ramp / 4, 0, 1).reshape([-1 if a == axis else 1 for a in range(3)])
    return (v * taper[..., None]).astype(np.float32)


def test_scaling_and_squaring_is_invertible():
    shape, spacing = (40, 44, 36), 2.0
    affine = np.diag([spacing] * 3 + [1.0])
    affine[:3, 3] = [-40, -44, -36]
    fwd, inv = fields_from_velocity(smooth_velocity(shape, spacing, 6.0, 4.0), affine)
    pts = grid_points(shape, affine)[::7]
    there = fwd.map(pts)
    assert np.abs(there - pts).max() > 2.0  # a real deformation
    for round_trip in (inv.map(there), fwd.map(inv.map(pts))):  # exp(-v) o exp(v) ~ identity
        err = np.linalg.norm(round_trip - pts, axis=1)
        assert err.mean() < 0.05 and err.max() < 0.1 * np.linalg.norm(there - pts, axis=1).max()
    for f in (fwd, inv):
        assert jacobian_determinant(f.displacement, [spacing] * 3).min() > 0


@pytest.fixture(scope="module")
def t1w_3mm():
    if not T1W.exists():
        pytest.skip(f"real test image missing: {T1W} (shared data folder not mounted)")
    img = nib.load(T1W)
    data = np.asanyarray(img.dataobj, dtype=np.float32)[:159, :192, :222].reshape(53, 3, 64, 3, 74, 3).mean((1, 3, 5))
    aff = img.affine @ np.diag([3, 3, 3, 1.0])
    aff[:3, 3] = img.affine[:3, :3] @ [1, 1, 1] + img.affine[:3, 3]
    return nib.Nifti1Image(data, aff)


def test_known_deformation_partly_recovered(t1w_3mm):
    # warp psi = exp(v) on an axis-aligned 3 mm grid over the head
    corners = grid_points(t1w_3mm.shape, t1w_3mm.affine)
    lo = corners.min(0)
    shape = tuple(int(n) for n in np.ceil((corners.max(0) - lo) / 3.0) + 1)
    grid_aff = np.diag([3.0, 3.0, 3.0, 1.0])
    grid_aff[:3, 3] = lo
    psi, psi_inv = fields_from_velocity(smooth_velocity(shape, 3.0, 5.0, 3.0, seed=1), grid_aff)
    fixed = t1w_3mm
    moving = nib.Nifti1Image(resample(fixed.get_fdata(dtype=np.float32), fixed.affine, fixed.shape,
                                      fixed.affine, [psi], order=3).astype(np.float32), fixed.affine)
    result = register_diffeomorphic(moving, fixed, np.eye(4), sloppy=True)
    # moving(phi(x)) ~ fixed(x) with moving = fixed o psi  =>  phi ~ psi^-1
    brain = fixed.get_fdata() > 0.2
    pts = grid_points(fixed.shape, fixed.affine)[brain.ravel()]
    before = np.linalg.norm(psi_inv.map(pts) - pts, axis=1).mean()
    after = np.linalg.norm(psi_inv.map(pts) - map_points(pts, result.chain), axis=1).mean()
    assert after < 0.7 * before, (before, after)  # measured 0.56
    assert result.stats["lncc_after"] > result.stats["lncc_before"]
    assert result.stats["jacobian_negative_fraction"] < 1e-4
    # the inverse chain undoes the forward chain
    round_trip = map_points(map_points(pts, result.chain), result.inverse_chain)
    err = np.linalg.norm(round_trip - pts, axis=1)
    assert err.mean() < 0.1 and np.percentile(err, 99) < 0.4, (err.mean(), np.percentile(err, 99))  # 0.05, 0.22


def test_finest_level_follows_the_images_resolution_and_the_device():
    from bids_boldsr.registration.svf import finest_spacing

    img = lambda mm: nib.Nifti1Image(np.zeros((4, 4, 4), np.float32), np.diag([mm, mm, mm, 1.0]))  # noqa: E731
    assert finest_spacing(img(1.0), img(1.0)) == 1.0          # 1 mm T1w -> 1 mm template on a CPU (0.7.3)
    assert finest_spacing(img(1.5), img(1.0)) == 1.5          # a 1.5 mm T1w: its own resolution
    assert finest_spacing(img(1.0), img(1.0), "cuda") == 1.0  # at the images' resolution on a GPU
    assert finest_spacing(img(0.7), img(1.0), "cuda") == 1.0  # the coarser image decides
    assert finest_spacing(img(2.0), img(1.0)) == 2.0          # 2 mm images keep 2 mm (synthetic pairs)
    assert finest_spacing(img(3.0), img(1.0), "cuda") == 2.0  # never coarser than 2 mm


def test_penalised_jacobian_is_the_determinant_of_identity_plus_forward_differences():
    """The loss's det J (``_det_jacobian``, written for autograd speed) against numpy's determinant
    of I + the forward-difference Jacobian, voxel by voxel, including folded voxels."""
    from bids_boldsr.registration.svf import _det_jacobian, _grad_mm

    rng = np.random.default_rng(3)
    u = rng.normal(scale=0.8, size=(1, 3, 9, 8, 7))
    det = _det_jacobian(_grad_mm(torch.from_numpy(u), 1.5)).numpy()[0]
    d = [np.diff(u[0], axis=1 + a)[(slice(None),) + tuple(slice(None, -1) if b != a else slice(None) for b in range(3))]
         for a in range(3)]  # d[a][c] = du_c / dx_a on the common (8, 7, 6) grid, in voxels
    jac = np.stack(d, -1) / 1.5  # (3 components, ..., 3 derivatives)
    expected = np.linalg.det(np.moveaxis(jac, 0, -2) + np.eye(3))
    assert det.shape == expected.shape == (8, 7, 6)
    assert np.allclose(det, expected, atol=1e-10) and (expected <= 0).any()  # folds included
