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
    from ..interpolate import apply_axis_operators, axis_operators

    coarse = np.asarray(vol.shape, float)
    fine = np.asarray(fine_shape, float)
    step = coarse / fine  # coarse voxels per fine voxel
    fine_to_coarse = np.eye(4)
    fine_to_coarse[:3, :3] = np.diag(step)
    fine_to_coarse[:3, 3] = (coarse - 1) / 2.0 - step * (fine - 1) / 2.0
    ops = axis_operators(vol.shape, np.eye(4), tuple(int(n) for n in fine_shape), fine_to_coarse, order)
    return apply_axis_operators(vol, ops)


def torch_trilinear(x: torch.Tensor, shape) -> torch.Tensor:
    """The published method's crude resampling (both directions): torch trilinear, FOV-aligned."""
    return F.interpolate(x, size=tuple(int(n) for n in shape), mode="trilinear", align_corners=False)


def robust_scale(vol: np.ndarray) -> float:
    """Intensity scale used to normalise each volume: the 99th percentile (robust to spikes)."""
    return max(float(np.percentile(vol, 99.0)), 1e-6)
