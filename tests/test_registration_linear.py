"""Linear registration and head-motion engines on a real T1w (labelled/vxm-subj)."""
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from bids_boldsr.registration.linear import (brain_mask_from_template, params_to_matrix, register_linear,
                                             rigid_params)
from bids_boldsr.registration.motion import confounds_table, estimate_head_motion, framewise_displacement
from bids_boldsr.registration.resample import resample

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
T1W = DATA / "labelled" / "vxm-subj_T1w.nii.gz"
torch.set_num_threads(1)


@pytest.fixture(scope="module")
def t1w_2mm():
    if not T1W.exists():
        pytest.skip(f"real test image missing: {T1W} (shared data folder not mounted)")
    img = nib.load(T1W)
    data = np.asanyarray(img.dataobj, dtype=np.float32)
    data = data[:160, :192, :224].reshape(80, 2, 96, 2, 112, 2).mean((1, 3, 5))
    aff = img.affine @ np.diag([2, 2, 2, 1.0])
    aff[:3, 3] = img.affine[:3, :3] @ [0.5, 0.5, 0.5] + img.affine[:3, 3]
    return nib.Nifti1Image(data, aff)


def rigid(t_mm, r_deg, centre):
    q = torch.tensor(list(t_mm) + list(np.deg2rad(r_deg)) + [0] * 6, dtype=torch.float64)
    return params_to_matrix(q, torch.tensor(centre, dtype=torch.float64)).numpy()


def errors(estimate, truth, centre):
    """Translation error at ``centre`` (mm) and residual rotation angle (deg)."""
    d = np.linalg.inv(truth) @ estimate
    trans = np.linalg.norm(d[:3, :3] @ centre + d[:3, 3] - centre)
    angle = np.degrees(np.arccos(np.clip((np.trace(d[:3, :3]) - 1) / 2, -1, 1)))
    return trans, angle


def moved(img, matrix, data=None):
    """An image whose content relates to ``img`` by the pull matrix fixed -> moving ``matrix``."""
    data = img.get_fdata(dtype=np.float32) if data is None else data
    out = resample(data, img.affine, data.shape, img.affine, [np.linalg.inv(matrix)], order=3)
    return nib.Nifti1Image(out.astype(np.float32), img.affine)


def brain_centre(img):
    ijk = np.argwhere(img.get_fdata() > 0.1).mean(0)
    return img.affine[:3, :3] @ ijk + img.affine[:3, 3]


def test_params_round_trip():
    centre = np.array([10.0, -20.0, 5.0])
    m = rigid([3, -2, 1], [4, -6, 8], centre)
    q = rigid_params(m, centre)
    np.testing.assert_allclose(q, [3, -2, 1, *np.deg2rad([4, -6, 8])], atol=1e-9)


@pytest.mark.parametrize("cost", ["ncc", "mi"])
def test_rigid_recovered(t1w_2mm, cost):
    centre = brain_centre(t1w_2mm)
    truth = rigid([6, -4, 5], [5, -4, 6], centre)
    est = register_linear(moved(t1w_2mm, truth), t1w_2mm, dof=6, cost=cost, sloppy=True)
    trans, angle = errors(est, truth, centre)
    assert trans < 0.5 and angle < 0.5, (trans, angle)


def test_mi_across_contrast_inversion(t1w_2mm):
    centre = brain_centre(t1w_2mm)
    data = t1w_2mm.get_fdata(dtype=np.float32)
    inverted = np.where(data > 0.05, 1.2 - data, 0).astype(np.float32)  # T2-like: WM dark, CSF bright
    truth = rigid([-5, 3, 4], [-3, 5, 2], centre)
    est = register_linear(moved(t1w_2mm, truth, inverted), t1w_2mm, dof=6, cost="mi", sloppy=True)
    trans, angle = errors(est, truth, centre)
    assert trans < 0.5 and angle < 0.5, (trans, angle)
    # NCC cannot match an inverted contrast: the same start lands far off or anti-aligned
    est_ncc = register_linear(moved(t1w_2mm, truth, inverted), t1w_2mm, dof=6, cost="ncc", sloppy=True)
    assert errors(est_ncc, truth, centre)[0] > trans


def test_affine_scaling_recovered(t1w_2mm):
    centre = brain_centre(t1w_2mm)
    truth = rigid([2, 0, -3], [2, 0, 0], centre)
    to_centre = np.eye(4)
    to_centre[:3, 3] = centre
    truth = truth @ to_centre @ np.diag([1.08, 0.94, 1.05, 1.0]) @ np.linalg.inv(to_centre)
    est = register_linear(moved(t1w_2mm, truth), t1w_2mm, dof=12, cost="mi", sloppy=True)
    pts = centre + np.random.default_rng(0).uniform(-40, 40, (200, 3))
    diff = (pts @ est[:3, :3].T + est[:3, 3]) - (pts @ truth[:3, :3].T + truth[:3, 3])
    assert np.linalg.norm(diff, axis=1).max() < 1.0


def test_brain_mask_from_template_identity(t1w_2mm):
    mask = nib.Nifti1Image((t1w_2mm.get_fdata() > 0.1).astype(np.uint8), t1w_2mm.affine)
    shift = np.eye(4)
    shift[:3, 3] = [4, 0, 0]  # template point x maps to subject point x + 4 mm (2 voxels)
    out = brain_mask_from_template(t1w_2mm, mask, shift).get_fdata() > 0
    src = mask.get_fdata() > 0
    assert out.shape == src.shape
    # world +4 mm is voxel -2 along i (LIA orientation), the pulled mask moves with the subject
    step = int(round(np.linalg.inv(t1w_2mm.affine)[0, :3] @ [4, 0, 0]))
    np.testing.assert_array_equal(np.roll(src, step, axis=0)[4:-4], out[4:-4])


def test_head_motion_recovered(t1w_2mm):
    """12 volumes of an EPI-like 4 mm image with known rigid motion and noise."""
    data = t1w_2mm.get_fdata(dtype=np.float32)[:80, :96, :112].reshape(40, 2, 48, 2, 56, 2).mean((1, 3, 5))
    ref = nib.Nifti1Image(data, t1w_2mm.affine @ np.diag([2, 2, 2, 1.0]))
    centre = brain_centre(ref)
    rng = np.random.default_rng(3)
    truths = [np.eye(4)] + [rigid(rng.uniform(-1.5, 1.5, 3), rng.uniform(-1.5, 1.5, 3), centre) for _ in range(11)]
    vols = [moved(ref, m).get_fdata(dtype=np.float32) for m in truths]
    series = np.stack(vols, -1) + rng.normal(0, 0.01, (*data.shape, 12)).astype(np.float32)
    res = estimate_head_motion(nib.Nifti1Image(series, ref.affine), ref)
    for est, truth in zip(res["matrices"], truths):
        trans, angle = errors(est, truth, centre)
        assert trans < 0.5 and angle < 0.5, (trans, angle)
    true_params = np.stack([rigid_params(m, res["centre"]) for m in truths])
    np.testing.assert_allclose(res["params"][:, :3], true_params[:, :3], atol=0.5)
    np.testing.assert_allclose(res["params"][:, 3:], true_params[:, 3:], atol=np.deg2rad(0.5))
    table = confounds_table(res)
    assert list(table.columns) == ["trans_x", "trans_y", "trans_z", "rot_x", "rot_y", "rot_z",
                                   "framewise_displacement"]
    assert np.isnan(table["framewise_displacement"][0])
    np.testing.assert_allclose(table["framewise_displacement"][1:], framewise_displacement(true_params)[1:], atol=1.0)
    # read and fitted 5 volumes at a time (memory flat in run length): the same estimates
    blocks = estimate_head_motion(nib.Nifti1Image(series, ref.affine), ref, block=5)
    np.testing.assert_allclose(blocks["matrices"], res["matrices"], atol=1e-4)
    np.testing.assert_allclose(blocks["params"], res["params"], atol=1e-5)


def test_framewise_displacement_formula():
    params = np.array([[0, 0, 0, 0, 0, 0], [1, -1, 0.5, 0.01, 0, -0.02]], float)
    np.testing.assert_allclose(framewise_displacement(params)[1], 2.5 + 50 * 0.03)


def test_multistart_recovers_bad_start():
    """A 30 degree rotation about x from the scanner alignment: the single start stops in a wrong
    optimum, the multi-start (13 starts, the BOLD -> T1w coregistration's) recovers it."""
    if not T1W.exists():
        pytest.skip(f"real test image missing: {T1W} (shared data folder not mounted)")
    img = nib.load(T1W)
    data = np.asanyarray(img.dataobj, dtype=np.float32)[:160, :192, :224].reshape(40, 4, 48, 4, 56, 4).mean((1, 3, 5))
    aff = img.affine @ np.diag([4, 4, 4, 1.0])
    aff[:3, 3] = img.affine[:3, :3] @ np.full(3, 1.5) + img.affine[:3, 3]
    fixed = nib.Nifti1Image(data, aff)
    centre = brain_centre(fixed)
    truth = rigid([0, 0, 0], [30, 0, 0], centre)
    pts = centre + np.random.default_rng(0).uniform(-50, 50, (200, 3))

    def surface_error(est):
        diff = (pts @ est[:3, :3].T + est[:3, 3]) - (pts @ truth[:3, :3].T + truth[:3, 3])
        return np.linalg.norm(diff, axis=1).max()

    kw = dict(dof=6, cost="mi", sloppy=True, init=np.eye(4))
    single = register_linear(moved(fixed, truth), fixed, **kw)
    multi = register_linear(moved(fixed, truth), fixed, n_starts=13, **kw)
    assert surface_error(single) > 5.0, surface_error(single)
    assert surface_error(multi) < 1.0, surface_error(multi)
