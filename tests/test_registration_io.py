"""Transforms written by us round-trip through nitransforms and resample identically."""
import nibabel as nib
import numpy as np
import pytest

from bids_boldsr.registration.field import DisplacementField
from bids_boldsr.registration.io import load_affine, load_field, save_affine, save_chain, save_field
from bids_boldsr.registration.resample import grid_points, resample

nitransforms = pytest.importorskip("nitransforms")


def rotation_matrix():
    a = np.deg2rad(7)
    m = np.eye(4)
    m[:3, :3] = [[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]]
    m[:3, 3] = [3.0, -2.0, 4.5]
    return m


def blob_image():
    """An oblique, anisotropic grid with a smooth asymmetric blob."""
    aff = np.array([[2.0, 0.2, 0, -30], [0, 1.9, 0.3, -34], [0.1, 0, 2.5, -28], [0, 0, 0, 1]])
    ijk = np.indices((30, 34, 24)).astype(float)
    data = np.exp(-((ijk[0] - 14) ** 2 / 40 + (ijk[1] - 18) ** 2 / 90 + (ijk[2] - 10) ** 2 / 20))
    data += 0.5 * np.exp(-((ijk[0] - 20) ** 2 + (ijk[1] - 10) ** 2 + (ijk[2] - 15) ** 2) / 15)
    return nib.Nifti1Image(data.astype(np.float32), aff)


@pytest.mark.parametrize("suffix", [".txt", ".mat"])
def test_affine_round_trip(tmp_path, suffix):
    matrix = rotation_matrix()
    path = save_affine(matrix, tmp_path / f"from-A_to-B_mode-image_xfm{suffix}")
    np.testing.assert_allclose(load_affine(path), matrix, atol=1e-5)
    # nitransforms resamples the same image as our resampler
    img = blob_image()
    xfm = nitransforms.linear.load(str(path), fmt="itk")
    theirs = np.asanyarray(nitransforms.resampling.apply(xfm, img, reference=img, order=1).dataobj)
    ours = resample(img.get_fdata(), img.affine, img.shape, img.affine, [matrix], order=1)
    np.testing.assert_allclose(theirs, ours, atol=1e-4)


def test_displacement_field_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    aff = np.diag([2.0, 2.0, 2.0, 1.0])
    aff[:3, 3] = [-30, -34, -24]
    disp = np.stack([np.full((30, 34, 24), 1.5), np.linspace(-2, 2, 34)[None, :, None].repeat(30, 0).repeat(24, 2),
                     rng.normal(0, 0.3, (30, 34, 24))], -1)
    field = DisplacementField(disp, aff)
    path = save_field(field, tmp_path / "warp.nii.gz")
    img = nib.load(path)
    assert img.shape == (30, 34, 24, 1, 3) and img.header.get_intent()[0] == "vector"
    back = load_field(path)
    np.testing.assert_allclose(back.displacement, field.displacement, atol=1e-6)
    # nitransforms reads it as an ITK field and maps points as we do (RAS/LPS handled)
    theirs = nitransforms.nonlinear.DenseFieldTransform(
        nitransforms.io.itk.ITKDisplacementsField.from_filename(path))
    pts = grid_points((30, 34, 24), aff)[::37]
    np.testing.assert_allclose(theirs.map(pts), field.map(pts), atol=1e-4)


def test_chain_files(tmp_path):
    aff = np.diag([2.0, 2.0, 2.0, 1.0])
    field = DisplacementField(np.ones((5, 6, 7, 3)), aff)
    paths = save_chain([field, rotation_matrix()], tmp_path / "xfm")
    assert [p.name for p in paths] == ["xfm_0.nii.gz", "xfm_1.txt"]


def test_composite_h5_round_trip(tmp_path):
    """The ITK composite (.h5) maps points like our chain, read back by nitransforms."""
    import nitransforms.manip
    from nitransforms.io.itk import ITKCompositeH5

    from bids_boldsr.registration.io import load_transform, save_composite_h5
    from bids_boldsr.registration.resample import map_points

    rng = np.random.default_rng(1)
    aff = np.diag([2.0, 2.0, 2.0, 1.0])
    aff[:3, 3] = [-30, -34, -24]
    field = DisplacementField(rng.normal(0, 1.0, (30, 34, 24, 3)), aff)
    path = save_composite_h5([field, rotation_matrix()], tmp_path / "from-T1w_to-MNI_mode-image_xfm.h5")
    affine_xfm, field_img = ITKCompositeH5.from_filename(path)  # file order: applied last first
    theirs_affine = nitransforms.linear.Affine(
        nitransforms.io.itk.ITKLinearTransform(parameters=affine_xfm["parameters"]).to_ras())
    np.testing.assert_allclose(theirs_affine.matrix, rotation_matrix(), atol=1e-6)
    theirs_field = nitransforms.nonlinear.DenseFieldTransform(field_img)
    pts = grid_points((30, 34, 24), aff)[::53]
    ours = map_points(pts, [field, rotation_matrix()])
    np.testing.assert_allclose(theirs_affine.map(theirs_field.map(pts)), ours, atol=1e-4)
    # and as the chain nitransforms builds from an ITK composite
    chain = nitransforms.manip.TransformChain.from_filename(path, fmt="itk")
    np.testing.assert_allclose(chain.map(pts), ours, atol=1e-4)
    # single files load as chain steps of the right kind
    save_field(field, tmp_path / "warp.nii.gz")
    assert isinstance(load_transform(tmp_path / "warp.nii.gz"), DisplacementField)
    assert load_transform(save_affine(rotation_matrix(), tmp_path / "a.txt")).shape == (4, 4)


@pytest.mark.parametrize("order", [0, 1, 3])
def test_resample_in_slabs_matches_whole_grid(order):
    rng = np.random.default_rng(0)
    data = rng.normal(size=(40, 50, 30)).astype(np.float32)
    shift = np.eye(4)
    shift[:3, 3] = [1.3, -0.7, 0.4]
    field = DisplacementField(rng.normal(0, 0.5, (20, 25, 15, 3)), np.diag([4.0, 4.0, 4.0, 1.0]))
    args = (data, np.diag([2.0, 2.0, 2.0, 1.0]), (70, 90, 50), np.diag([1.1, 1.1, 1.1, 1.0]), [field, shift])
    whole = resample(*args, order=order)
    slabs = resample(*args, order=order, max_points=90 * 50 * 7)  # 10 slabs of 7
    assert slabs.dtype == whole.dtype == np.float32
    np.testing.assert_allclose(slabs, whole, atol=1e-5)
