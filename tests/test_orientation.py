"""Oblique and LPS/RAS-flipped BOLD must work (issue 15): accepted by the up-front checks, and
the super-resolved and resampled series land at the same world positions as for the original.

Built from the real ds-xa30 run: the same voxels stored flipped (LPS-like: i and j reversed,
the affine compensating, so the world image is unchanged), or the same voxels under a 20-degree
oblique affine (the world image rotated)."""
import nibabel as nib
import numpy as np
import pytest

from conftest import shared


@pytest.fixture(scope="module")
def xa30(tmp_path_factory):
    src = nib.load(shared("ds-xa30", "sub-01/func/sub-01_task-fa_run-1_bold.nii.gz"))
    data = np.asarray(src.dataobj[..., :3], dtype=np.float32)
    root = tmp_path_factory.mktemp("orient")
    n = np.array(data.shape[:3])
    flip = np.diag([-1.0, -1.0, 1.0, 1.0])
    flip[:2, 3] = n[:2] - 1  # voxel (i, j, k) of the flipped copy = voxel (n-1-i, n-1-j, k)
    a = np.deg2rad(20)
    rot = np.eye(4)
    rot[1:3, 1:3] = [[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]]
    centre = src.affine @ np.r_[(n - 1) / 2, 1]
    oblique = np.eye(4)
    oblique[:3, 3] = centre[:3]
    oblique = oblique @ rot @ np.linalg.inv(oblique)
    images = {"ras": (data, src.affine), "lps": (data[::-1, ::-1], src.affine @ flip),
              "oblique": (data, oblique @ src.affine)}
    paths = {}
    for name, (vol, aff) in images.items():
        img = nib.Nifti1Image(vol, aff, src.header)
        img.set_qform(aff, 1)
        img.set_sform(aff, 1)
        paths[name] = root / f"{name}.nii.gz"
        nib.save(img, paths[name])
    return paths, flip, oblique


def test_checks_accept_flipped_and_oblique(xa30):
    from bids_boldsr.validate import check_bold

    paths, _, _ = xa30
    orig, flipped = (nib.aff2axcodes(nib.load(paths[k]).affine) for k in ("ras", "lps"))
    assert orig[0] != flipped[0] and orig[1] != flipped[1]  # e.g. LAS stored as RPS
    for name in ("lps", "oblique"):
        assert check_bold(paths[name], {"RepetitionTime": 1.0}) == 1.0


def _trilinear_sr(paths, names, out_dir):
    """The x2 trilinear SR series of the named variants of the run, loaded."""
    from bids_boldsr.sr.apply import super_resolve_bold

    for name in names:
        super_resolve_bold(paths[name], out_dir / f"{name}.nii.gz", method="trilinear", factor=2,
                           progress=False)
    return [nib.load(out_dir / f"{name}.nii.gz") for name in names]


def test_sr_of_flipped_run_is_at_the_same_world_positions(xa30, tmp_path):
    paths, _, _ = xa30
    ras, lps = _trilinear_sr(paths, ("ras", "lps"), tmp_path)
    codes = nib.aff2axcodes(ras.affine), nib.aff2axcodes(lps.affine)
    assert codes[0][0] != codes[1][0] and codes[0][1] != codes[1][1]  # the stored order is kept
    # the same world point: voxel (i, j, k) of lps is voxel (N-1-i, N-1-j, k) of ras
    shape = np.array(ras.shape[:3])
    corner = np.r_[0, 0, 5, 1.0]
    assert np.allclose(lps.affine @ corner, ras.affine @ np.r_[shape[0] - 1, shape[1] - 1, 5, 1.0])
    a, b = np.asarray(ras.dataobj), np.asarray(lps.dataobj)[::-1, ::-1]
    assert np.abs(a - b).max() <= 2 * ras.dataobj.slope  # int16 steps


def test_oblique_run_keeps_its_rotation_and_resamples_into_place(xa30, tmp_path):
    from bids_boldsr.registration.apply import resample_series

    paths, _, oblique = xa30
    ras, obl = _trilinear_sr(paths, ("ras", "oblique"), tmp_path)
    assert np.allclose(obl.affine, oblique @ ras.affine, atol=1e-4)  # the rotation is kept
    assert np.abs(np.asarray(ras.dataobj) - np.asarray(obl.dataobj)).max() <= 2 * ras.dataobj.slope
    # resampled onto a plain (non-oblique) grid: where the rotation says, not where the voxels sit
    plain = tmp_path / "plain.nii.gz"
    src = nib.load(paths["ras"])
    resample_series(paths["oblique"], plain, src.shape[:3], oblique @ src.affine, order=1, progress=False)
    back = np.asarray(nib.load(plain).dataobj[..., 0], dtype=float)
    orig = np.asarray(src.dataobj[..., 0], dtype=float)
    inner = (slice(2, -2),) * 3
    assert np.corrcoef(back[inner].ravel(), orig[inner].ravel())[0, 1] > 0.999
    straight = tmp_path / "straight.nii.gz"  # the same voxels on the unrotated grid do not match
    resample_series(paths["oblique"], straight, src.shape[:3], src.affine, order=1, progress=False)
    wrong = np.asarray(nib.load(straight).dataobj[..., 0], dtype=float)
    assert np.corrcoef(wrong[inner].ravel(), orig[inner].ravel())[0, 1] < 0.9
