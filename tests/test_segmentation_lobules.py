"""Atlas labels in native space: through a synthetic diffeomorphic transform (inverse chain), and
restricted to a learned cerebellum mask (``segmentation.lobules``)."""
import nibabel as nib
import numpy as np
from scipy import ndimage

from bids_boldsr.registration.resample import grid_points, map_points
from bids_boldsr.registration.svf import fields_from_velocity
from bids_boldsr.segmentation.atlas import labels_to_grid
from bids_boldsr.segmentation.lobules import lobules_in_mask


def _atlas(shape=(40, 40, 32), spacing=2.0):
    """Three 'lobules' in an ellipsoid, on a template grid centred on the origin."""
    affine = np.diag([spacing] * 3 + [1.0])
    affine[:3, 3] = -(np.array(shape) - 1) / 2 * spacing
    x, y, z = np.moveaxis(grid_points(shape, affine).reshape(*shape, 3), -1, 0)
    inside = (x / 30) ** 2 + (y / 22) ** 2 + (z / 18) ** 2 < 1
    labels = np.where(inside, np.where(x < -8, 1, np.where(x > 8, 2, 3)), 0).astype(np.uint8)
    return nib.Nifti1Image(labels, affine)


def test_atlas_through_synthetic_inverse_chain_returns_on_the_forward_chain():
    atlas = _atlas()
    rng = np.random.default_rng(0)
    # smooth velocity (a few mm) on the template grid, and a rotated/shifted native grid
    v = np.stack([ndimage.zoom(rng.normal(0, 3.0, (4, 4, 4)), 10, order=3)[:40, :40, :32] for _ in range(3)], -1)
    field, inverse_field = fields_from_velocity(v.astype(np.float32), atlas.affine)
    angle = np.deg2rad(10)
    a = np.eye(4)  # template -> native pull (as the affine stage of the registration gives it)
    a[:3, :3] = [[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]]
    a[:3, 3] = [4.0, -3.0, 2.0]
    forward, inverse = [field, a], [np.linalg.inv(a), inverse_field]
    pts = grid_points(atlas.shape, atlas.affine)[np.asarray(atlas.dataobj).ravel() > 0]  # away from the field's edge
    assert np.abs(map_points(map_points(pts, forward), inverse) - pts).max() < 0.5  # mm
    native_affine = np.diag([1.5, 1.5, 1.5, 1.0])
    native_affine[:3, 3] = [-45.0, -45.0, -36.0]
    native = labels_to_grid(atlas, (60, 60, 48), native_affine, inverse)
    back = labels_to_grid(native, atlas.shape, atlas.affine, forward)
    truth = np.asarray(atlas.dataobj)
    for label in (1, 2, 3):
        p, t = np.asarray(back.dataobj) == label, truth == label
        assert 2 * (p & t).sum() / (p.sum() + t.sum()) > 0.93, label
    # and a wrong direction (the forward chain used to pull into native space) would not
    wrong = labels_to_grid(labels_to_grid(atlas, (60, 60, 48), native_affine, forward), atlas.shape, atlas.affine,
                           forward)
    p, t = np.asarray(wrong.dataobj) > 0, truth > 0
    assert 2 * (p & t).sum() / (p.sum() + t.sum()) < 0.9


def test_lobules_kept_inside_the_learned_mask():
    atlas = np.asarray(_atlas().dataobj)
    # the learned cerebellum: 20 % smaller than the atlas one, shifted 2 voxels, plus one far blob
    x, y, z = np.indices(atlas.shape)
    c = (np.array(atlas.shape) - 1) / 2 + [2, 0, 0]
    mask = ((x - c[0]) / 12) ** 2 + ((y - c[1]) / 8.8) ** 2 + ((z - c[2]) / 7.2) ** 2 < 1
    far = np.zeros_like(mask)
    far[0:2, 0:2, 0:2] = True
    out = lobules_in_mask(mask | far, atlas, (2.0, 2.0, 2.0), margin_mm=10.0)
    assert ((out > 0) == mask).all()  # every voxel of the mask labelled; nothing outside; far blob left out
    assert set(np.unique(out[mask])) == {1, 2, 3}
    both = mask & (atlas > 0)
    assert (out[both] == atlas[both]).all()  # where the atlas has a label it is kept
    assert (lobules_in_mask(np.zeros_like(mask), atlas, (2, 2, 2)) == 0).all()
