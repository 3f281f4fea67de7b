"""Index-space resampling between a grid and its FOV-preserving refinement (``sr_target_grid``)."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage


def upsample(vol: np.ndarray, fine_shape, order: int = 3) -> np.ndarray:
    """Spline (order 3) or trilinear (order 1) interpolation of ``vol`` onto the finer grid.

    Same result as ``interpolate_volume`` with the ``sr_target_grid`` affines, but axis-aligned
    (a diagonal map), which is several times faster.
    """
    coarse = np.asarray(vol.shape, float)
    fine = np.asarray(fine_shape, float)
    step = coarse / fine  # coarse voxels per fine voxel
    offset = (coarse - 1) / 2.0 - step * (fine - 1) / 2.0
    out = ndimage.affine_transform(np.asarray(vol, np.float32), np.diag(step), offset=offset,
                                   output_shape=tuple(int(n) for n in fine_shape), order=order,
                                   mode="nearest", prefilter=order > 1)
    return out.astype(np.float32)


def torch_trilinear(x: torch.Tensor, shape) -> torch.Tensor:
    """The published method's crude resampling (both directions): torch trilinear, FOV-aligned."""
    return F.interpolate(x, size=tuple(int(n) for n in shape), mode="trilinear", align_corners=False)


def robust_scale(vol: np.ndarray) -> float:
    """Intensity scale used to normalise each volume: the 99th percentile (robust to spikes)."""
    return max(float(np.percentile(vol, 99.0)), 1e-6)
