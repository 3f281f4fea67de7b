"""The explicit acquisition model ``B``: how a BOLD scanner turns a fine image into its LR volume.

``x = B y``: ``y`` on the fine (super-resolved) grid, ``x`` on the acquired grid. ``B`` is separable
into one matrix per axis, each row integrating the fine image (piecewise constant over its voxels)
against the point-spread of one acquired voxel, then sampling at the acquired voxel centre
(blur + decimation in one step):

* in-plane axes: voxel averaging, a box as wide as the acquired voxel (``s`` fine voxels for an
  effective per-axis factor ``s = n_fine / n_coarse``; area-weighted for non-integer ``s``);
* slice axis: the slice profile, a Gaussian with FWHM = slice thickness. The thickness is given
  relative to the slice spacing (``SliceThickness / SpacingBetweenSlices`` from the sidecar, 1 when
  unknown) so ``FWHM = s * thickness_ratio`` fine voxels; a slice gap (ratio < 1) narrows it.
  ``profile="box"`` makes it a box of that width instead.
* ``inplane="kspace"``: the in-plane axes are acquired as a smaller k-space matrix instead of voxel
  averaging: the fine image's spectrum truncated to the coarse matrix (a periodic sinc point-spread,
  with an optional Tukey apodisation of the outer ``apodisation`` fraction of k-space), sampled at
  the coarse voxel centres. This is how a scanner makes a coarser matrix.

Rows are normalised to sum 1, so a constant image stays constant even at the field-of-view edges.
Everything is in voxel units of the fine grid, so the same ``B`` relates HR->LR and LR->LR/s
(scale recursion, used for self-supervised training). Grids follow ``sr_target_grid``: the outer
faces of both fields of view coincide.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from functools import lru_cache
from math import sqrt
from pathlib import Path

import numpy as np
import torch
from scipy import special

FWHM_TO_SIGMA = 1.0 / (2.0 * sqrt(2.0 * np.log(2.0)))


def coarse_centres(n_fine: int, n_coarse: int) -> np.ndarray:
    """Centres of the coarse voxels in fine voxel-index coordinates (shared field of view)."""
    step = n_fine / n_coarse
    return (np.arange(n_coarse) - (n_coarse - 1) / 2.0) * step + (n_fine - 1) / 2.0


def axis_matrix(n_fine: int, n_coarse: int, profile: str = "box", fwhm: float | None = None,
                apodisation: float = 0.0) -> np.ndarray:
    """``(n_coarse, n_fine)`` matrix: blur with a box or Gaussian of width ``fwhm`` fine voxels
    (default: one coarse voxel), or truncate k-space (``"kspace"``), then sample."""
    step = n_fine / n_coarse
    centres = coarse_centres(n_fine, n_coarse)[:, None]
    lo, hi = np.arange(n_fine)[None, :] - 0.5, np.arange(n_fine)[None, :] + 0.5  # fine voxel faces
    if profile == "kspace":
        return _kspace_matrix(n_fine, n_coarse, centres, apodisation)
    if profile == "box":
        half = max(float(fwhm if fwhm is not None else step), 1e-3) / 2.0
        weights = np.clip(np.minimum(hi, centres + half) - np.maximum(lo, centres - half), 0, None)
    elif profile == "gaussian":
        sigma = max(float(fwhm if fwhm is not None else step), 1e-3) * FWHM_TO_SIGMA
        cdf = lambda t: 0.5 * (1.0 + special.erf(t / (sigma * sqrt(2.0))))
        weights = cdf(hi - centres) - cdf(lo - centres)
    else:
        raise ValueError(f"unknown profile {profile!r}")
    return weights / weights.sum(axis=1, keepdims=True)


def _kspace_matrix(n_fine, n_coarse, centres, apodisation):
    """The fine line's DFT kept for the central ``n_coarse`` frequencies (the two Nyquist bins of
    an even matrix at half weight, so the kernel is real), Tukey-tapered, evaluated at ``centres``."""
    k = np.arange(-(n_coarse // 2), n_coarse // 2 + 1, dtype=float)
    weight = np.ones_like(k)
    if n_coarse % 2 == 0:
        weight[[0, -1]] = 0.5
    if apodisation > 0:
        r = np.abs(k) / (n_coarse / 2.0)  # 1 at the acquired edge
        edge = r > 1 - apodisation
        weight[edge] *= 0.5 * (1 + np.cos(np.pi * (r[edge] - 1 + apodisation) / apodisation))
    phase = 2 * np.pi * (np.arange(n_fine)[None, :] - centres)[..., None] * k / n_fine
    return (np.cos(phase) * weight).sum(-1) / n_fine  # rows sum to weight[k == 0] = 1


@dataclass(frozen=True)
class AcquisitionModel:
    """Parameters of ``B`` (see module docstring). ``slice_axis=None``: every axis is in-plane."""
    slice_axis: int | None = 2
    thickness_ratio: float = 1.0
    profile: str = "gaussian"  # slice profile; "box" (with in-plane "box") is plain voxel averaging
    inplane: str = "box"       # "box" (voxel averaging) or "kspace" (a smaller acquired matrix)
    apodisation: float = 0.0   # Tukey taper of the outer fraction of k-space ("kspace" only)

    def matrices(self, fine_shape, coarse_shape) -> list[np.ndarray]:
        return _matrices(self, tuple(int(n) for n in fine_shape), tuple(int(n) for n in coarse_shape))

    def _build(self, fine_shape, coarse_shape) -> list[np.ndarray]:
        mats = []
        for axis, (nf, nc) in enumerate(zip(fine_shape, coarse_shape)):
            if axis == self.slice_axis:
                mats.append(axis_matrix(nf, nc, self.profile, fwhm=nf / nc * self.thickness_ratio))
            else:
                mats.append(axis_matrix(nf, nc, self.inplane, apodisation=self.apodisation))
        return mats

    def apply(self, vol, coarse_shape):
        """``B y`` for a 3-D volume (numpy in, numpy out; a torch tensor stays a tensor)."""
        mats = self.matrices(vol.shape[-3:], coarse_shape)
        return _separable(vol, mats, transpose=False)

    def adjoint(self, vol, fine_shape):
        """``B^T x`` (back-projection of residuals onto the fine grid)."""
        mats = self.matrices(fine_shape, vol.shape[-3:])
        return _separable(vol, mats, transpose=True)

    def torch_operator(self, fine_shape, coarse_shape, device="cpu"):
        """Differentiable ``B`` for tensors ``(..., X, Y, Z)`` on the given grids."""
        mats = [torch.as_tensor(m, device=device) for m in self.matrices(fine_shape, coarse_shape)]
        return lambda y: _separable(y, mats, transpose=False)

    def to_dict(self) -> dict:
        return asdict(self)


def separable(vol, mats):
    """``(M_x kron M_y kron M_z) vol``: one matrix ``(out, in)`` per axis on the last three axes."""
    return _separable(vol, mats, transpose=False)


def _separable(vol, mats, transpose: bool):
    """Apply one matrix per axis to the last three axes (torch einsum: ~5x numpy tensordot)."""
    is_numpy = not isinstance(vol, torch.Tensor)
    out = torch.as_tensor(np.asarray(vol, dtype=np.float32)) if is_numpy else vol
    mats = [torch.as_tensor(m, device=out.device) for m in mats]
    specs = ("...xyz,ax->...ayz", "...xyz,by->...xbz", "...xyz,cz->...xyc")
    t_specs = ("...ayz,ax->...xyz", "...xbz,by->...xyz", "...xyc,cz->...xyz")
    for spec, mat in zip(t_specs if transpose else specs, mats):
        out = torch.einsum(spec, out, mat)
    return out.numpy() if is_numpy else out


@lru_cache(maxsize=256)  # room for psf_estimate's 73 candidates without evicting the run's own
def _matrices(model: AcquisitionModel, fine_shape, coarse_shape) -> list[np.ndarray]:
    """Cached per grid pair: inference applies B and B^T ~100 times per volume."""
    return [m.astype(np.float32) for m in model._build(fine_shape, coarse_shape)]


def coarse_shape_for(shape, factor) -> tuple[int, int, int]:
    """Shape of the grid ``factor`` times coarser (the inverse of ``sr_target_grid``'s rounding)."""
    factor = np.broadcast_to(np.asarray(factor, dtype=float), (3,))
    return tuple(int(max(1, round(n / f))) for n, f in zip(shape[:3], factor))


def acquisition_from_image(img, sidecar: str | Path | dict | None = None,
                           slice_profile: str = "gaussian") -> AcquisitionModel:
    """Build ``B``'s parameters from a BOLD image header and (optionally) its JSON sidecar.

    Slice axis: the NIfTI ``dim_info`` slice dimension when set, otherwise axis 2 (axial 2-D EPI).
    Thickness ratio: ``SliceThickness / SpacingBetweenSlices``; without ``SpacingBetweenSlices`` the
    voxel size along the slice axis is the spacing. ``slice_profile="box"`` models plain voxel
    averaging along the slice axis too.
    """
    slice_axis = img.header.get_dim_info()[2] if hasattr(img.header, "get_dim_info") else None
    slice_axis = 2 if slice_axis is None else int(slice_axis)
    meta = sidecar
    if isinstance(sidecar, (str, Path)):
        meta = json.loads(Path(sidecar).read_text()) if Path(sidecar).exists() else {}
    meta = meta or {}
    spacing = float(meta.get("SpacingBetweenSlices") or img.header.get_zooms()[slice_axis])
    thickness = float(meta.get("SliceThickness") or spacing)
    return AcquisitionModel(slice_axis=slice_axis, thickness_ratio=thickness / spacing, profile=slice_profile)


def sidecar_for(bold_file: str | Path) -> Path:
    """The BIDS JSON sidecar next to a ``.nii``/``.nii.gz`` file."""
    name = Path(bold_file).name
    stem = name[:-7] if name.endswith(".nii.gz") else Path(name).stem
    return Path(bold_file).with_name(stem + ".json")
