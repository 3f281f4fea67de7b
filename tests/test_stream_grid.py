import gzip

import nibabel as nib
import numpy as np
import pytest

from bids_boldsr.atomic import atomic_write_text
from bids_boldsr.nifti import voxel_sizes
from bids_boldsr.sr.grid import sr_target_grid
from bids_boldsr.nifti import StreamingNiftiWriter, int16_scale


def test_x2_grid_coincides_with_hr_grid():
    aff = np.diag([3.0, 3.0, 3.3, 1.0])
    aff[:3, 3] = [-90, -100, -50]
    shape, hr = sr_target_grid((80, 80, 35), aff, factor=2)
    assert shape == (160, 160, 70)
    assert np.allclose(voxel_sizes(hr), [1.5, 1.5, 1.65])
    # outer faces of the field of view are unchanged
    assert np.allclose(aff @ [-0.5, -0.5, -0.5, 1], hr @ [-0.5, -0.5, -0.5, 1])
    assert np.allclose(aff @ [79.5, 79.5, 34.5, 1], hr @ [159.5, 159.5, 69.5, 1])


def test_voxel_size_and_non_integer_factor():
    aff = np.diag([3.375, 3.375, 3.4, 1.0])
    shape, out = sr_target_grid((64, 64, 33), aff, voxel_size=1.5)
    assert np.allclose(voxel_sizes(out), 1.5) and shape == (144, 144, 75)
    shape, out = sr_target_grid((64, 64, 33), aff, factor=1.5)
    assert shape == (96, 96, 50)
    with pytest.raises(ValueError):
        sr_target_grid((4, 4, 4), aff, factor=0)


@pytest.mark.parametrize("name,dtype", [("a.nii.gz", np.float32), ("b.nii", np.int16)])
def test_streaming_writer_roundtrip(tmp_path, name, dtype):
    rng = np.random.default_rng(0)
    data = rng.normal(100, 10, (5, 6, 7, 4)).astype(np.float32)
    aff = np.diag([2.0, 2.0, 2.5, 1.0])
    scale = int16_scale(np.abs(data).max()) if dtype == np.int16 else None
    with StreamingNiftiWriter(tmp_path / name, data.shape, aff, dtype=dtype, scale=scale,
                              zooms_t=1.5) as w:
        for t in range(4):
            w.write_volume(data[..., t])
    img = nib.load(tmp_path / name)
    assert img.shape == data.shape
    assert np.allclose(img.header.get_zooms(), (2, 2, 2.5, 1.5))
    assert np.allclose(img.affine, aff)
    tol = 1e-6 if dtype == np.float32 else scale
    assert np.abs(img.get_fdata() - data).max() <= tol
    if name.endswith(".gz"):
        with gzip.open(tmp_path / name) as fh:
            assert fh.read(4) == (348).to_bytes(4, "little")


def test_streaming_writer_leaves_nothing_on_failure(tmp_path):
    out = tmp_path / "x.nii.gz"
    with pytest.raises(ValueError, match="wrote 1 of 3"):
        with StreamingNiftiWriter(out, (2, 2, 2, 3), np.eye(4)) as w:
            w.write_volume(np.zeros((2, 2, 2)))
    with pytest.raises(RuntimeError):
        with StreamingNiftiWriter(out, (2, 2, 2, 3), np.eye(4)) as w:
            raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []


def test_atomic_write_replaces(tmp_path):
    atomic_write_text(tmp_path / "f.txt", "one")
    atomic_write_text(tmp_path / "f.txt", "two")
    assert (tmp_path / "f.txt").read_text() == "two"
    assert [p.name for p in tmp_path.iterdir()] == ["f.txt"]


def test_super_resolve_reference_interface(tmp_path):
    """The coregistration's moving image: the BOLD reference on the SR grid, values preserved."""
    from bids_boldsr.interfaces.sr import SuperResolveReference

    aff = np.diag([3.0, 3.0, 3.3, 1.0])
    ijk = np.indices((12, 10, 8)).astype(np.float32)
    ref = nib.Nifti1Image(100 + 5 * ijk[0] - 2 * ijk[1] + ijk[2], aff)  # linear: spline reproduces it
    nib.save(ref, tmp_path / "ref.nii.gz")
    res = SuperResolveReference(bold_file=str(tmp_path / "ref.nii.gz"), method="spline", factor=2.0).run(
        cwd=str(tmp_path))
    out = nib.load(res.outputs.out_file)
    shape, affine = sr_target_grid((12, 10, 8), aff, factor=2.0)
    assert out.shape == tuple(shape) and np.allclose(out.affine, affine)
    centre = tuple(n // 2 for n in out.shape)
    world = affine[:3, :3] @ np.array(centre) + affine[:3, 3]
    i, j, k = np.linalg.solve(aff[:3, :3], world - aff[:3, 3])
    assert abs(out.get_fdata()[centre] - (100 + 5 * i - 2 * j + k)) < 0.05
