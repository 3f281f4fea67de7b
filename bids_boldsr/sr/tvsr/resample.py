"""Index-space resampling between a grid and its FOV-preserving refinement (``sr_target_grid``)."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def upsample(vol: np.ndarray, fine_shape, order: int = 3) -> np.ndarray:
    """Spline (order 3) or trilinear (order 1) interpolation of ``vol`` onto the finer grid.

    Same result as ``interpolate_volume`` with the ``sr_target_grid`` affines, in index space;
    uses the same separable per-axis operators.
    """
    from ..interpolate import apply_axis_operators

    return apply_axis_operators(vol, upsample_operators(vol.shape, fine_shape, order))


def upsample_operators(coarse_shape, fine_shape, order: int = 3) -> list[np.ndarray]:
    """``upsample``'s per-axis ``(fine, coarse)`` matrices."""
    from ..interpolate import axis_operators

    coarse = np.asarray(coarse_shape, float)
    fine = np.asarray(fine_shape, float)
    step = coarse / fine  # coarse voxels per fine voxel
    fine_to_coarse = np.eye(4)
    fine_to_coarse[:3, :3] = np.diag(step)
    fine_to_coarse[:3, 3] = (coarse - 1) / 2.0 - step * (fine - 1) / 2.0
    return axis_operators(tuple(int(n) for n in coarse_shape), np.eye(4), tuple(int(n) for n in fine_shape),
                          fine_to_coarse, order)


def psf_upsample_operators(coarse_shape, fine_shape, acq) -> list[np.ndarray]:
    """Per-axis interpolation matched to the acquisition model ``acq``: along an in-plane axis
    acquired as a smaller k-space matrix, the band-limited (zero-filled k-space) interpolation, i.e.
    the pseudo-inverse of that axis's untapered ``B`` (an apodised ``B``'s pseudo-inverse would divide
    by the taper's near-zero edge weights); cubic spline along every other axis."""
    from .acquisition import axis_matrix

    ops = upsample_operators(coarse_shape, fine_shape, 3)
    for ax, (nf, nc) in enumerate(zip(fine_shape, coarse_shape)):
        if ax != acq.slice_axis and acq.inplane == "kspace":
            ops[ax] = np.linalg.pinv(axis_matrix(int(nf), int(nc), "kspace"))
    return ops


def torch_trilinear(x: torch.Tensor, shape) -> torch.Tensor:
    """The published method's crude resampling (both directions): torch trilinear, FOV-aligned."""
    return F.interpolate(x, size=tuple(int(n) for n in shape), mode="trilinear", align_corners=False)


def robust_scale(vol: np.ndarray) -> float:
    """Intensity scale used to normalise each volume: the 99th percentile (robust to spikes)."""
    return max(float(np.percentile(vol, 99.0)), 1e-6)
