"""Compiled cubic B-spline / trilinear sampling for CPU resampling (numba, every core).

One pass per point: the voxel coordinate comes from a 3x4 matrix applied to the point's world
coordinate (so no coordinate array is made per volume), then the 4 x 4 x 4 taps of the
spline coefficients are summed with separable weights. scipy's ``map_coordinates`` does the
same arithmetic in generic, single-threaded C (and needs the coordinates as a float64 array
first); this kernel is several times cheaper per point and runs on all cores.

Values equal ``ndimage.map_coordinates(coef, A @ p + b, order, mode="constant", cval,
prefilter=False)`` on scipy's mirror-boundary spline coefficients: taps beyond the edge read the
mirrored coefficients, points outside ``[0, n - 1]`` on any axis are ``cval``.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

PAD = 2  # mirrored coefficients around the volume: the taps of any point inside reach 1 + 2 voxels


def available() -> bool:
    try:
        import numba  # noqa: F401
    except ImportError:
        return False
    return True


def coefficients(vol: np.ndarray, order: int) -> np.ndarray:
    """The array :func:`sample_points` reads: spline coefficients (order 3) or the values
    (order 1), float32, padded by mirrored voxels (scipy's ``mirror``: d c b | a b c d)."""
    data = np.asarray(vol, dtype=np.float32)
    if order == 3:
        data = ndimage.spline_filter(data, order=3, output=np.float32)
    elif order != 1:
        raise ValueError(f"order {order}: the compiled kernel interpolates with order 1 or 3")
    return np.ascontiguousarray(np.pad(data, PAD, mode="reflect"))


def sample_points(coef: np.ndarray, shape, points: np.ndarray, matrix: np.ndarray, order: int,
                  cval: float = 0.0, out: np.ndarray | None = None) -> np.ndarray:
    """Values ``(N,)`` float32 at voxel coordinates ``matrix[:3, :3] @ p + matrix[:3, 3]`` of the
    world points ``points`` ``(N, 3)``; ``coef`` from :func:`coefficients` of a volume of ``shape``."""
    points = np.ascontiguousarray(points, dtype=np.float32)
    m = np.ascontiguousarray(np.asarray(matrix, dtype=np.float64)[:3, :4])
    if out is None:
        out = np.empty(points.shape[0], dtype=np.float32)
    dims = np.asarray(shape[:3], dtype=np.float64)
    _kernels()[order](coef, dims, points, m, float(cval), out)
    return out


_COMPILED = {}


def _kernels():
    """Compile on first use (about 2 s per process), so importing this module costs nothing."""
    if _COMPILED:
        return _COMPILED
    import numba

    jit = numba.njit(parallel=True, nogil=True, fastmath=False, cache=False)

    @numba.njit(inline="always")
    def _voxel(pts, p, m, dims):
        """Voxel coordinate of point p, and whether it lies in [0, n - 1] on every axis."""
        px, py, pz = pts[p, 0], pts[p, 1], pts[p, 2]
        x = m[0, 0] * px + m[0, 1] * py + m[0, 2] * pz + m[0, 3]
        y = m[1, 0] * px + m[1, 1] * py + m[1, 2] * pz + m[1, 3]
        z = m[2, 0] * px + m[2, 1] * py + m[2, 2] * pz + m[2, 3]
        inside = 0.0 <= x <= dims[0] - 1 and 0.0 <= y <= dims[1] - 1 and 0.0 <= z <= dims[2] - 1
        return x, y, z, inside

    @numba.njit(inline="always")
    def _cubic_weights(t):
        t2 = t * t
        t3 = t2 * t
        w0 = (1.0 - t) ** 3 / 6.0
        w1 = (4.0 - 6.0 * t2 + 3.0 * t3) / 6.0
        w3 = t3 / 6.0
        return (w0, w1, 1.0 - w0 - w1 - w3, w3)

    @jit
    def cubic(coef, dims, pts, m, cval, out):
        for p in numba.prange(pts.shape[0]):
            x, y, z, inside = _voxel(pts, p, m, dims)
            if not inside:
                out[p] = cval
                continue
            fx, fy, fz = np.floor(x), np.floor(y), np.floor(z)
            i0, j0, k0 = int(fx) + PAD - 1, int(fy) + PAD - 1, int(fz) + PAD - 1
            wx = _cubic_weights(x - fx)
            wy = _cubic_weights(y - fy)
            wz = _cubic_weights(z - fz)
            acc = 0.0
            for a in range(4):
                sa = 0.0
                for b in range(4):
                    row = coef[i0 + a, j0 + b]
                    sa += wy[b] * (wz[0] * row[k0] + wz[1] * row[k0 + 1]
                                   + wz[2] * row[k0 + 2] + wz[3] * row[k0 + 3])
                acc += wx[a] * sa
            out[p] = acc

    @jit
    def linear(coef, dims, pts, m, cval, out):
        for p in numba.prange(pts.shape[0]):
            x, y, z, inside = _voxel(pts, p, m, dims)
            if not inside:
                out[p] = cval
                continue
            fx, fy, fz = np.floor(x), np.floor(y), np.floor(z)
            i, j, k = int(fx) + PAD, int(fy) + PAD, int(fz) + PAD
            tx, ty, tz = x - fx, y - fy, z - fz
            acc = 0.0
            for a in range(2):
                wa = tx if a else 1.0 - tx
                for b in range(2):
                    wb = ty if b else 1.0 - ty
                    acc += wa * wb * ((1.0 - tz) * coef[i + a, j + b, k] + tz * coef[i + a, j + b, k + 1])
            out[p] = acc

    _COMPILED.update({3: cubic, 1: linear})
    return _COMPILED
