"""Resampling through a chain of spatial transforms, evaluated once.

Convention (the ITK/ANTs one, also used by nitransforms and fMRIPrep): a transform
``from-A_to-B`` maps *points* of space B (world RAS mm) to points of space A, i.e. it
"pulls" an image of space A onto the grid of B.  A chain ``[T1, T2, ...]`` maps a point of
the output grid ``x`` to ``... T2(T1(x))``: list the transform nearest the output first.

A chain step is either a 4x4 matrix (RAS mm -> RAS mm) or any object with a
``map(points) -> points`` method taking and returning ``(N, 3)`` world coordinates
(e.g. a dense displacement field).
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage


def grid_points(shape, affine, dtype=np.float64) -> np.ndarray:
    """World coordinates (N, 3) of every voxel centre of a 3-D grid, C order."""
    ijk = np.indices(tuple(shape[:3]), dtype=dtype).reshape(3, -1)
    affine = np.asarray(affine, dtype=dtype)
    return (affine[:3, :3] @ ijk + affine[:3, 3:4]).T


def map_points(points: np.ndarray, transforms) -> np.ndarray:
    """Apply a transform chain to world points ``(N, 3)``."""
    out = np.asarray(points)
    for step in transforms or ():
        if hasattr(step, "map"):
            out = np.asarray(step.map(out))
        else:
            m = np.asarray(step, dtype=out.dtype if out.dtype.kind == "f" else float)
            out = out @ m[:3, :3].T + m[:3, 3]
    return out


def points_to_voxels(points: np.ndarray, affine) -> np.ndarray:
    """World points ``(N, 3)`` to voxel coordinates ``(3, N)`` of an image with ``affine``."""
    inv = np.linalg.inv(np.asarray(affine, dtype=float))
    return (inv[:3, :3] @ points.T + inv[:3, 3:4]).astype(points.dtype, copy=False)


def sample(data: np.ndarray, voxels: np.ndarray, out_shape, order=3, cval=0.0,
           prefilter=True) -> np.ndarray:
    """Sample a 3-D array at voxel coordinates ``(3, N)`` and reshape to ``out_shape``.

    ``order=0`` is nearest neighbour (labels); for order > 1 pass a spline-prefiltered array
    with ``prefilter=False`` to reuse the filtering across many calls.
    """
    values = ndimage.map_coordinates(np.asarray(data), voxels, order=order, mode="constant",
                                     cval=cval, prefilter=prefilter and order > 1)
    return values.reshape(tuple(out_shape[:3]))


def resample(data, src_affine, ref_shape, ref_affine, transforms=(), order=3, cval=0.0,
             max_points=2 ** 22):
    """Resample a 3-D array onto a reference grid through a transform chain (one interpolation).

    Large grids (a 0.7 mm T1w has 40 M voxels) go slab by slab along the first axis so that
    the coordinate arrays stay under ``max_points`` points (memory bounded)."""
    ref_shape = tuple(ref_shape[:3])
    step = max(1, max_points // max(1, ref_shape[1] * ref_shape[2]))
    if step >= ref_shape[0]:
        pts = map_points(grid_points(ref_shape, ref_affine), transforms)
        return sample(data, points_to_voxels(pts, src_affine), ref_shape, order=order, cval=cval)
    dtype = np.asarray(data).dtype
    if order > 1:  # filter once, not per slab
        data, order_kw = ndimage.spline_filter(np.asarray(data, dtype=np.float64), order=order), False
    else:
        order_kw = True
    out = None
    for start, shape, slab_affine in _slabs(ref_shape, ref_affine, step):
        pts = map_points(grid_points(shape, slab_affine), transforms)
        vals = sample(data, points_to_voxels(pts, src_affine), shape, order=order, cval=cval,
                      prefilter=order_kw)
        if out is None:
            out = np.empty(ref_shape, dtype=dtype)
        out[start:start + shape[0]] = vals
    return out


def _slabs(ref_shape, ref_affine, step):
    """``(start, shape, affine)`` of consecutive slabs of ``step`` planes along the first axis."""
    for start in range(0, ref_shape[0], step):
        affine = np.asarray(ref_affine, dtype=float).copy()
        affine[:3, 3] = affine[:3, :3] @ [start, 0, 0] + affine[:3, 3]
        yield start, (min(step, ref_shape[0] - start),) + tuple(ref_shape[1:3]), affine


def resample_compiled(data, src_affine, ref_shape, ref_affine, transforms=(), order=1, cval=0.0,
                      max_points=2 ** 22) -> np.ndarray:
    """:func:`resample` for orders 1 and 3 by the compiled all-core kernel (``kernel``), float32
    (equal within float32 rounding); for the report's figures, where a 0.7 mm T1w grid is 40 M
    points. Other orders, or without numba, fall back to :func:`resample`."""
    from . import kernel

    if order not in (1, 3) or not kernel.available():
        return resample(data, src_affine, ref_shape, ref_affine, transforms, order=order, cval=cval)
    data = np.asarray(data, dtype=np.float32)
    coef = kernel.coefficients(data, order)
    to_voxels = np.linalg.inv(np.asarray(src_affine, dtype=float))
    ref_shape = tuple(ref_shape[:3])
    out = np.empty(ref_shape, dtype=np.float32)
    flat, plane = out.reshape(-1), ref_shape[1] * ref_shape[2]
    for start, shape, slab_affine in _slabs(ref_shape, ref_affine, max(1, max_points // max(1, plane))):
        pts = map_points(grid_points(shape, slab_affine, dtype=np.float32), transforms)
        kernel.sample_points(coef, data.shape, pts, to_voxels, order, cval,
                             out=flat[start * plane:(start + shape[0]) * plane])
    return out
