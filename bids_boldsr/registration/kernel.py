"""Compiled cubic B-spline / trilinear sampling for CPU resampling (numba, every core).

One pass per point: the voxel coordinate comes from a 3x4 matrix applied to the point's world
coordinate (so no coordinate array is made per volume), then the 4 x 4 x 4 taps of the
spline coefficients are summed with separable weights. scipy's ``map_coordinates`` does the
same arithmetic in generic, single-threaded C (and needs the coordinates as a float64 array
first); this kernel is several times cheaper per point and runs on all cores.

Values equal ``ndimage.map_coordinates(coef, A @ p + b, order, mode="constant", cval,
prefilter=False)`` on scipy's mirror-boundary spline coefficients: taps beyond the edge read the
mirrored coefficients, points outside ``[0, n - 1]`` on any axis are ``cval``. The voxel
coordinate and the bounds test are float64; the tap weights and sums float32 (the stored series
is int16 at ~1/20000 of its range, float32 rounding is ~1e-7 of it).

The coefficients come from the same recursive filter as ``ndimage.spline_filter`` (Unser's
cubic B-spline prefilter, pole sqrt(3) - 2, scipy's exact mirror initialisation), run here on
every core: scipy's runs on one.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np

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
    if order not in (1, 3):
        raise ValueError(f"order {order}: the compiled kernel interpolates with order 1 or 3")
    data = np.array(vol, dtype=np.float32)  # a copy: filtered in place
    if order == 3:
        _prefilter(data)
    return np.ascontiguousarray(np.pad(data, PAD, mode="reflect"))


def _prefilter(data: np.ndarray) -> None:
    """Each axis in turn, its lines split between threads (the compiled loop releases the GIL)."""
    import numba

    run = _kernels()["prefilter"]
    parts = max(1, numba.get_num_threads())
    with ThreadPoolExecutor(parts) as pool:
        for axis in range(3):
            view = np.moveaxis(data, axis, 2)  # lines along the view's last axis
            lines = view.shape[0] * view.shape[1]
            cuts = [lines * i // parts for i in range(parts + 1)]
            list(pool.map(lambda i: run(view, cuts[i], cuts[i + 1]), range(parts)))


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
    """Compile on first use (seconds, once per process), so importing this module costs nothing."""
    if _COMPILED:
        return _COMPILED
    import numba

    jit = numba.njit(parallel=True, nogil=True, fastmath=False, cache=False)
    f32 = np.float32

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
        w0 = (f32(1) - t) ** 3 / f32(6)
        w1 = (f32(4) - f32(6) * t2 + f32(3) * t3) / f32(6)
        w3 = t3 / f32(6)
        return (w0, w1, f32(1) - w0 - w1 - w3, w3)

    @jit
    def cubic(coef, dims, pts, m, cval, out):
        for p in numba.prange(pts.shape[0]):
            x, y, z, inside = _voxel(pts, p, m, dims)
            if not inside:
                out[p] = cval
                continue
            fx, fy, fz = np.floor(x), np.floor(y), np.floor(z)
            i0, j0, k0 = int(fx) + PAD - 1, int(fy) + PAD - 1, int(fz) + PAD - 1
            wx = _cubic_weights(f32(x - fx))
            wy = _cubic_weights(f32(y - fy))
            wz = _cubic_weights(f32(z - fz))
            acc = f32(0)
            for a in range(4):
                sa = f32(0)
                for b in range(4):
                    i, j = i0 + a, j0 + b
                    sa += wy[b] * (wz[0] * coef[i, j, k0] + wz[1] * coef[i, j, k0 + 1]
                                   + wz[2] * coef[i, j, k0 + 2] + wz[3] * coef[i, j, k0 + 3])
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

    @numba.njit(nogil=True, error_model="numpy")  # serial: compiles in a fraction of parallel=True's time
    def prefilter(arr, first, last):
        """Cubic B-spline coefficients along the last axis of ``arr`` (float32, any strides) for
        lines ``first:last`` (C order over the first two axes), in place; float64 arithmetic
        per line, as ``ndimage.spline_filter1d(mode="mirror")``."""
        n = arr.shape[2]
        if n < 2:
            return
        z = np.sqrt(3.0) - 2.0
        zn = z ** (n - 1)
        c = np.empty(n)
        for line in range(first, last):
            row = arr[line // arr.shape[1], line % arr.shape[1]]
            for i in range(n):
                c[i] = 6.0 * row[i]  # the gain (1 - z)(1 - 1/z)
            c0, zi = c[0] + zn * c[n - 1], z  # causal start: the mirrored line, summed exactly
            for i in range(1, n - 1):
                c0 += zi * (c[i] + zn * c[n - 1 - i])
                zi *= z
            c[0] = c0 / (1.0 - zn * zn)
            for i in range(1, n):
                c[i] += z * c[i - 1]
            c[n - 1] = (z * c[n - 2] + c[n - 1]) * z / (z * z - 1.0)
            for i in range(n - 2, -1, -1):
                c[i] = z * (c[i + 1] - c[i])
            for i in range(n):
                row[i] = c[i]

    _COMPILED.update({3: cubic, 1: linear, "prefilter": prefilter})
    return _COMPILED
