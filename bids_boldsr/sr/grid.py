"""Target grids for super-resolution that keep the field of view of the input.

For a factor ``f`` the output voxel is ``v / f`` and the output shape ``round(n * f)``; the
outer faces of the field of view coincide with the input's when ``n * f`` is an integer (so
an x2 grid of an LR image coincides with the HR grid it was simulated from). A requested
voxel size is honoured exactly and the grid is centred on the input's field of view.
"""
from __future__ import annotations

import numpy as np


def sr_target_grid(shape, affine, factor=None, voxel_size=None):
    """Return ``(shape, affine)`` of the super-resolved grid for a 3-D ``shape``/``affine``.

    Give either ``factor`` (scalar or per-axis) or ``voxel_size`` in mm (scalar or per-axis).
    """
    shape = np.asarray(shape[:3], dtype=int)
    affine = np.asarray(affine, dtype=float)
    zooms = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))
    if (factor is None) == (voxel_size is None):
        raise ValueError("give exactly one of factor or voxel_size")
    if factor is not None:
        factor = np.broadcast_to(np.asarray(factor, dtype=float), (3,))
        if np.any(factor <= 0):
            raise ValueError(f"super-resolution factor must be positive, got {factor.tolist()}")
        new_shape = np.maximum(np.round(shape * factor).astype(int), 1)
        new_zooms = zooms * shape / new_shape  # exact FOV preservation
    else:
        new_zooms = np.broadcast_to(np.asarray(voxel_size, dtype=float), (3,))
        if np.any(new_zooms <= 0):
            raise ValueError(f"voxel size must be positive, got {new_zooms.tolist()}")
        new_shape = np.maximum(np.round(shape * zooms / new_zooms).astype(int), 1)
    step = new_zooms / zooms  # HR voxel step in LR voxel units
    offset = (shape - 1) / 2.0 - step * (new_shape - 1) / 2.0
    hr_to_lr = np.eye(4)
    hr_to_lr[:3, :3] = np.diag(step)
    hr_to_lr[:3, 3] = offset
    return tuple(int(s) for s in new_shape), affine @ hr_to_lr

