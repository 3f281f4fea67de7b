"""Working grids shared by synthesis and inference: blur, resampling, intensity normalisation.

Training and inference must see images prepared the same way, so both go through
:func:`gaussian_blur` (anti-aliasing before downsampling) and :func:`normalize`.
"""
import math

import numpy as np
import torch
import torch.nn.functional as F


def gaussian_blur(vol: torch.Tensor, sigmas) -> torch.Tensor:
    """Separable Gaussian blur of a 3-D tensor; ``sigmas`` in voxels per axis (0: none)."""
    out = vol[None, None]
    for axis, sigma in enumerate(torch.as_tensor(sigmas, dtype=torch.float32).tolist()):
        if sigma < 0.2:
            continue
        radius = max(1, math.ceil(3 * sigma))
        taps = torch.arange(-radius, radius + 1, dtype=torch.float32)
        kernel = torch.exp(-0.5 * (taps / sigma) ** 2)
        shape = [1, 1, 1, 1, 1]
        shape[2 + axis] = kernel.numel()
        pad = [0] * 6
        pad[2 * (2 - axis)] = pad[2 * (2 - axis) + 1] = radius
        padded = F.pad(out, pad, mode="replicate")
        out = F.conv3d(padded, (kernel / kernel.sum()).view(shape))
    return out[0, 0]


def antialias_sigmas(zooms, work_mm) -> torch.Tensor:
    """Blur (in input voxels) that makes a ``zooms`` image look acquired at ``work_mm``."""
    z = torch.as_tensor(np.asarray(zooms, dtype=np.float32))
    ratio = torch.clamp((work_mm / z) ** 2 - 1, min=0)
    return 0.4 * torch.sqrt(ratio)


def to_working(vol: torch.Tensor, zooms, work_mm: float, shape) -> torch.Tensor:
    """Resample an image covering the same extent as the working grid (training path)."""
    vol = gaussian_blur(vol, antialias_sigmas(zooms, work_mm))
    return F.interpolate(vol[None, None], size=list(shape), mode="trilinear", align_corners=False)[0, 0]


def normalize(vol: torch.Tensor) -> torch.Tensor:
    """Map the 0.5th-99.5th intensity percentiles to 0-1 (clipped to [0, 1.5])."""
    flat = vol.reshape(-1)
    sample = flat[:: max(1, flat.numel() // 200_000)]
    lo, hi = torch.quantile(sample, torch.tensor([0.005, 0.995]))
    return ((vol - lo) / torch.clamp(hi - lo, min=1e-6)).clamp(0, 1.5)


def as_3d(image) -> np.ndarray:
    """Float32 3-D data of ``image``: a 4-D series is averaged over time (NaNs -> 0)."""
    data = np.asarray(image.dataobj, dtype=np.float32)
    if data.ndim == 4:
        data = data.mean(-1)
    return np.nan_to_num(data.reshape(data.shape[:3]))


def world_grid(centre, shape, spacing) -> np.ndarray:
    """Affine of an axis-aligned RAS grid of ``shape`` voxels of ``spacing`` mm centred on ``centre``."""
    aff = np.diag([spacing, spacing, spacing, 1.0])
    aff[:3, 3] = np.asarray(centre, float) - (np.asarray(shape) - 1) / 2 * spacing
    return aff


def resample(data: np.ndarray, affine: np.ndarray, grid_affine: np.ndarray, shape, work_mm: float,
             fill: float = 0.0) -> torch.Tensor:
    """Anti-aliased trilinear resampling of ``data`` (voxel->world ``affine``) onto a world grid."""
    zooms = np.sqrt((affine[:3, :3] ** 2).sum(0))
    vol = gaussian_blur(torch.from_numpy(np.ascontiguousarray(data, dtype=np.float32)),
                        antialias_sigmas(zooms, work_mm))
    return sample_at(vol[None], np.linalg.inv(affine) @ grid_affine, shape, fill)[0]


def sample_at(channels: torch.Tensor, out_to_in: np.ndarray, shape, fill) -> torch.Tensor:
    """Trilinear sampling of (C, X, Y, Z) ``channels`` at output voxels mapped by ``out_to_in``."""
    axes = [torch.arange(n, dtype=torch.float64) for n in shape]
    ijk = torch.stack(torch.meshgrid(*axes, indexing="ij"), -1)
    m = torch.from_numpy(out_to_in)
    src = ijk @ m[:3, :3].T + m[:3, 3]
    size = torch.tensor(channels.shape[1:], dtype=torch.float64)
    # grid_sample wants (x, y, z) = (last, middle, first) axis in [-1, 1] (align_corners=True)
    norm = (2 * src / (size - 1) - 1).flip(-1).float()
    out = F.grid_sample(channels[None].float(), norm[None], mode="bilinear", padding_mode="zeros",
                        align_corners=True)[0]
    if fill:
        inside = ((src >= 0) & (src <= size - 1)).all(-1)
        out = torch.where(inside, out, torch.as_tensor(fill, dtype=out.dtype))
    return out
