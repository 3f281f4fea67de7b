"""Interpolation baselines (cubic spline, trilinear) and the streamed run-level driver."""
from __future__ import annotations

import numpy as np
from scipy import ndimage

from ..registration.resample import grid_points, points_to_voxels

ORDERS = {"spline": 3, "trilinear": 1}


def interpolate_volume(vol, in_affine, out_shape, out_affine, method="spline"):
    """Resample one 3-D volume onto ``out_shape``/``out_affine`` (same space, finer grid).

    Outside the input field of view values continue the nearest edge (``mode='nearest'``) so
    the FOV-preserving SR grid has no dark border.
    """
    if method not in ORDERS:
        raise ValueError(f"unknown interpolation method {method!r}; choose from {sorted(ORDERS)}")
    vox = points_to_voxels(grid_points(out_shape, out_affine), in_affine)
    out = ndimage.map_coordinates(np.asarray(vol, dtype=np.float32), vox, order=ORDERS[method],
                                  mode="nearest", prefilter=ORDERS[method] > 1)
    return out.reshape(tuple(out_shape)).astype(np.float32)
