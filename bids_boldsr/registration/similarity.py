"""Differentiable similarity measures (higher is better) on sampled intensities in [0, 1]."""
from __future__ import annotations

import torch
import torch.nn.functional as F


MI_BINS = 32


def soft_bins(x: torch.Tensor, bins: int = MI_BINS) -> torch.Tensor:
    """Parzen-window (Gaussian, one bin wide) memberships of values in [0, 1]: (..., P) -> (..., P, bins)."""
    centres = torch.linspace(0, 1, bins, dtype=x.dtype, device=x.device)
    sigma = 1.0 / bins  # one bin width: smooth enough for gradients, sharp enough for contrast
    k = torch.exp(-0.5 * ((x[..., None] - centres) / sigma) ** 2)
    return k / (k.sum(-1, keepdim=True) + 1e-12)


def mutual_information(f: torch.Tensor, m: torch.Tensor, w: torch.Tensor, bins: int = MI_BINS,
                       f_bins: torch.Tensor | None = None) -> torch.Tensor:
    """Parzen-window (Gaussian) mutual information of weighted samples.

    ``f``, ``m``, ``w``: (N, P) fixed values, moving values, sample weights; returns (N,).
    ``f_bins``: ``soft_bins(f)`` computed once by a caller whose fixed samples do not change (an
    optimiser's loop), the same values without recomputing a quarter of each iteration.
    """
    wf = (soft_bins(f, bins) if f_bins is None else f_bins) * w[..., None]
    joint = wf.transpose(1, 2) @ soft_bins(m, bins)  # (N, bins, bins)
    joint = joint / (joint.sum((1, 2), keepdim=True) + 1e-12)
    pf, pm = joint.sum(2, keepdim=True), joint.sum(1, keepdim=True)
    eps = 1e-10
    return (joint * (torch.log(joint + eps) - torch.log(pf @ pm + eps))).sum((1, 2))


def ncc(f: torch.Tensor, m: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Weighted global normalised cross-correlation per batch row; inputs (N, P), returns (N,)."""
    ws = w.sum(1, keepdim=True) + 1e-12
    fm = f - (w * f).sum(1, keepdim=True) / ws
    mm = m - (w * m).sum(1, keepdim=True) / ws
    cov = (w * fm * mm).sum(1)
    return cov / torch.sqrt((w * fm * fm).sum(1) * (w * mm * mm).sum(1) + 1e-12)


def box_filter(x: torch.Tensor, window: int) -> torch.Tensor:
    """Mean over a ``window``^3 box (zero padded) of (N, C, X, Y, Z) tensors, by cumulative
    sums along each axis (a 9^3 conv3d is ~100x slower on CPU)."""
    p = window // 2
    for d in (2, 3, 4):
        pad = [0] * 6
        pad[2 * (4 - d)], pad[2 * (4 - d) + 1] = p + 1, p
        c = F.pad(x, pad).cumsum(d)
        n = x.shape[d]
        x = (c.narrow(d, window, n) - c.narrow(d, 0, n)) / window
    return x


def lncc(f: torch.Tensor, m: torch.Tensor, window: int = 9, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Local (windowed) squared normalised cross-correlation of (N, 1, X, Y, Z) volumes, the
    ANTs/VoxelMorph CC metric; mean over voxels (or over ``mask``)."""
    mu_f, mu_m = box_filter(f, window), box_filter(m, window)
    var_f = box_filter(f * f, window) - mu_f ** 2
    var_m = box_filter(m * m, window) - mu_m ** 2
    cov = box_filter(f * m, window) - mu_f * mu_m
    cc = cov * cov / (var_f * var_m + 1e-5)
    if mask is None:
        return cc.mean()
    return (cc * mask).sum() / (mask.sum() + 1e-12)
