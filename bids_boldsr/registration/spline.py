"""Cubic B-spline sampling in torch: the values of ``scipy.ndimage.map_coordinates(order=3,
mode="constant")`` on spline coefficients, multi-threaded on CPU and on the GPU when present.

The coefficients (``ndimage.spline_filter``, mirror boundary, once per volume) are padded by two
mirrored voxels and laid out so that the 4 x 4 taps of a point along the last two axes are one
contiguous row of 16 values (one cache line); a point then costs 4 row gathers (one per tap along
the first axis) and a weighted sum, instead of scipy's 64 scattered reads. Points outside
``[0, n - 1]`` on any axis are ``cval`` (no extrapolation), exactly as scipy's ``mode="constant"``.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

PAD = 2


class Coefficients:
    """Spline coefficients of one volume in the row layout of :func:`sample_cubic`."""

    def __init__(self, vol: np.ndarray, device="cpu", order=3):
        import torch

        self.shape = tuple(vol.shape)
        self.order = order
        data = np.asarray(vol, dtype=np.float32)
        if order == 3:
            data = ndimage.spline_filter(data, order=3, output=np.float32)
            data = np.pad(data, PAD, mode="reflect")  # reflect = scipy's 'mirror' (d c b | a b c d)
            coef = torch.from_numpy(np.ascontiguousarray(data)).to(device)
            # rows[i, j, k] = coef[i, j:j + 4, k:k + 4] flattened
            self.rows = coef.unfold(1, 4, 1).unfold(2, 4, 1).reshape(-1, 16)
            self.dims = (coef.shape[0], coef.shape[1] - 3, coef.shape[2] - 3)
        elif order == 1:
            data = np.pad(data, 1, mode="constant")
            coef = torch.from_numpy(np.ascontiguousarray(data)).to(device)
            self.rows = coef.unfold(1, 2, 1).unfold(2, 2, 1).reshape(-1, 4)
            self.dims = (coef.shape[0], coef.shape[1] - 1, coef.shape[2] - 1)
        else:
            raise ValueError(f"order {order}: the torch engine interpolates with order 1 or 3")


def _weights(t, order):
    """Tap weights ``(N, order + 1)`` of the fractional positions ``t``."""
    import torch

    if order == 1:
        return torch.stack([1 - t, t], -1)
    t2 = t * t
    t3 = t2 * t
    w0 = (1 - t) ** 3 / 6
    w1 = (4 - 6 * t2 + 3 * t3) / 6
    w3 = t3 / 6
    return torch.stack([w0, w1, 1 - w0 - w1 - w3, w3], -1)


def sample(coef: Coefficients, vox, cval=0.0):
    """Values at voxel coordinates ``vox`` (``(3, N)`` tensor on the coefficients' device), ``(N,)``.

    Order 3 equals ``map_coordinates(order=3, mode="constant", prefilter=False)`` on scipy's spline
    coefficients; order 1 equals ``map_coordinates(order=1, mode="constant")``."""
    import torch

    k = coef.order + 1
    offset = PAD - 1 if coef.order == 3 else 1  # padded index of the first tap is floor(x) + offset
    inside = torch.ones(vox.shape[1], dtype=torch.bool, device=vox.device)
    starts, weights = [], []
    for a in range(3):
        x = vox[a]
        inside &= (x >= 0) & (x <= coef.shape[a] - 1)
        base = torch.floor(x)
        weights.append(_weights(x - base, coef.order))
        hi = coef.dims[a] - (k if a == 0 else 1)
        starts.append((base.long() + offset).clamp_(0, hi))
    _, ny, nz = coef.dims
    row = (starts[0] * ny + starts[1]) * nz + starts[2]
    acc = None
    for i in range(k):  # one gather of k*k contiguous values per tap along the first axis
        part = coef.rows.index_select(0, row + i * ny * nz) * weights[0][:, i:i + 1]
        acc = part if acc is None else acc.add_(part)
    yz = (weights[1][:, :, None] * weights[2][:, None, :]).reshape(-1, k * k)
    out = (acc * yz).sum(-1)
    return torch.where(inside, out, torch.full_like(out, cval))
