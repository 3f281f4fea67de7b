import numpy as np
import pytest
from scipy import ndimage

from bids_boldsr.registration.resample import grid_points, points_to_voxels
from bids_boldsr.sr.grid import sr_target_grid
from bids_boldsr.sr.interpolate import interpolate_volume


@pytest.mark.parametrize("method,order", [("spline", 3), ("trilinear", 1)])
@pytest.mark.parametrize("spec", [{"factor": 2}, {"factor": 1.5}, {"voxel_size": 1.7}])
def test_separable_equals_map_coordinates(method, order, spec):
    rng = np.random.default_rng(1)
    vol = ndimage.gaussian_filter(rng.normal(size=(13, 11, 9)), 1).astype(np.float32)
    aff = np.array([[-3.0, 0, 0, 20], [0, 3.0, 0, -10], [0, 0, 3.3, 5], [0, 0, 0, 1]])
    shape, out_aff = sr_target_grid(vol.shape, aff, **spec)
    fast = interpolate_volume(vol, aff, shape, out_aff, method)
    vox = points_to_voxels(grid_points(shape, out_aff), aff)
    ref = ndimage.map_coordinates(vol, vox, order=order, mode="nearest").reshape(shape)
    assert fast.shape == shape
    assert np.abs(fast - ref).max() < 1e-4


def test_oblique_grid_falls_back():
    vol = np.arange(27, dtype=np.float32).reshape(3, 3, 3)
    rot = np.eye(4)
    rot[:2, :2] = [[0.8, -0.6], [0.6, 0.8]]
    out = interpolate_volume(vol, np.eye(4), (3, 3, 3), rot, "trilinear")
    assert out.shape == (3, 3, 3) and np.isfinite(out).all()
