"""Image helpers shared by the registration engines: intensity scaling, smoothing pyramids,
centres of mass and the world -> ``grid_sample`` coordinate map.

Everything works in world RAS mm; images are torch tensors shaped (N, C, X, Y, Z) in the
voxel order of the NIfTI array, paired with their voxel -> world affine.
"""
from __future__ import annotations

import math

import nibabel as nib
import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from ..nifti import voxel_sizes


def image_data(img: nib.Nifti1Image) -> tuple[np.ndarray, np.ndarray]:
    """3-D float32 data and affine of an image (a single-volume 4-D image is squeezed)."""
    data = np.asanyarray(img.dataobj, dtype=np.float32)
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise ValueError(f"expected a 3-D image, got shape {data.shape}")
    return np.nan_to_num(data), np.asarray(img.affine, dtype=float)


def normalise(data: np.ndarray, mask=None, lo=0.5, hi=99.5) -> np.ndarray:
    """Robustly scale intensities to [0, 1] (percentiles of the mask or of non-zero voxels),
    so that fixed histogram bins and learning rates fit every scanner's units."""
    sel = data[mask > 0] if mask is not None else data[data != 0]
    if sel.size == 0:
        sel = data.ravel()
    a, b = np.percentile(sel, [lo, hi])
    return np.clip((data - a) / max(b - a, 1e-6), 0, 1).astype(np.float32)


def gaussian_blur(t: torch.Tensor, sigma_vox) -> torch.Tensor:
    """Separable Gaussian blur of a (N, C, X, Y, Z) tensor; sigma per axis in voxels.
    Without gradients on CPU it uses scipy (torch conv1d/conv3d with one channel is ~10-50x
    slower there); otherwise conv1d on rows."""
    if not t.requires_grad and t.device.type == "cpu":
        out = t.detach().numpy().copy()
        for axis, s in enumerate(sigma_vox):
            if s > 0.3:
                out = ndimage.gaussian_filter1d(out, s, axis=2 + axis, mode="nearest", truncate=3.0)
        return torch.from_numpy(out)
    for axis, s in enumerate(sigma_vox):
        if s <= 0.3:
            continue
        r = int(math.ceil(3 * s))
        x = torch.arange(-r, r + 1, dtype=t.dtype, device=t.device)
        k = torch.exp(-0.5 * (x / s) ** 2)
        rows = t.movedim(2 + axis, -1)
        shape = rows.shape
        rows = F.pad(rows.reshape(-1, 1, shape[-1]), (r, r), mode="replicate")
        rows = F.conv1d(rows, (k / k.sum()).view(1, 1, -1))
        t = rows.reshape(shape).movedim(-1, 2 + axis)
    return t.contiguous()


def downsample(t: torch.Tensor, affine, target_mm: float, smooth=True):
    """Bring a (N, C, X, Y, Z) tensor towards ``target_mm`` voxels: integer block averaging
    (cheap on 0.7 mm T1w images) then a Gaussian for the rest; returns (tensor, affine)."""
    vox = voxel_sizes(affine)
    k = [max(1, int(target_mm / v)) for v in vox]
    k = [min(kk, s) for kk, s in zip(k, t.shape[2:])]
    if max(k) > 1:
        t = F.avg_pool3d(t, kernel_size=k, stride=k)
        scale = np.diag(k + [1]).astype(float)
        scale[:3, 3] = (np.asarray(k) - 1) / 2.0
        affine = np.asarray(affine) @ scale
        vox = voxel_sizes(affine)
    if smooth:
        # Gaussian of FWHM ~ target minus what block averaging already removed
        sigma = [math.sqrt(max((0.42 * target_mm) ** 2 - (0.42 * v) ** 2, 0)) / v for v in vox]
        t = gaussian_blur(t, sigma)
    return t, affine


def world_to_grid(affine, shape) -> np.ndarray:
    """4x4 map from world mm to ``grid_sample`` coordinates (align_corners=True) of an image
    with voxel->world ``affine`` and spatial ``shape`` (grid order is z, y, x = k, j, i)."""
    shape = np.asarray(shape[-3:], dtype=float)
    norm = np.zeros((4, 4))
    for g, a in enumerate((2, 1, 0)):  # grid coordinate g indexes array axis a
        norm[g, a] = 2.0 / max(shape[a] - 1, 1)
        norm[g, 3] = -1.0
    norm[3, 3] = 1
    return norm @ np.linalg.inv(np.asarray(affine, dtype=float))


def sample_world(t: torch.Tensor, w2g: torch.Tensor, points: torch.Tensor, mode="bilinear"):
    """Sample a (N, C, X, Y, Z) tensor at world points (N, P, 3); returns values (N, C, P)
    and a detached in-field-of-view indicator (N, P)."""
    g = points @ w2g[:3, :3].T + w2g[:3, 3]
    inside = (g.detach().abs() <= 1).all(-1).to(t.dtype)
    v = F.grid_sample(t, g[:, None, None], mode=mode, padding_mode="border", align_corners=True)
    return v[:, :, 0, 0], inside


def centre_of_mass(data: np.ndarray, affine, mask=None) -> np.ndarray:
    """Intensity-weighted centre (world mm) of the mask, or of the positive intensities."""
    w = (mask > 0).astype(np.float64) if mask is not None else np.clip(data, 0, None).astype(np.float64)
    if w.sum() == 0:
        w = np.ones_like(w)
    ijk = [np.tensordot(w.sum(tuple(b for b in range(3) if b != a)), np.arange(w.shape[a]), 1)
           for a in range(3)]
    ijk = np.asarray(ijk) / w.sum()
    return np.asarray(affine)[:3, :3] @ ijk + np.asarray(affine)[:3, 3]


def translation(t) -> np.ndarray:
    m = np.eye(4)
    m[:3, 3] = t
    return m


def foreground_mask(data: np.ndarray, frac=0.1) -> np.ndarray:
    """Crude foreground: voxels above ``frac`` of the robust maximum (for sample selection)."""
    hi = np.percentile(data[data > 0], 99) if (data > 0).any() else 1.0
    return data > frac * hi
