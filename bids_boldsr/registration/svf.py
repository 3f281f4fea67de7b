"""Diffeomorphic registration: stationary velocity field (SVF) or neural velocity field (NeVF).

phi = exp(v) by scaling and squaring (7 squarings); loss = -LNCC(window 9)
+ lambda_smooth * mean ||grad u||^2 + lambda_jac * mean relu(-det J); coarse to fine.
Everything runs on an axis-aligned RAS working grid (isotropic, covering the fixed mask or
foreground) after the affine, so displacements are plain RAS mm vectors.

The result's pull chain maps fixed points to moving points: ``[field, affine]``; the inverse
chain ``[inv(affine), inverse_field]`` (exp(-v)) pulls fixed-space images (atlas labels) into
the moving (native) space.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field as dc_field

import nibabel as nib
import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from .field import DisplacementField, jacobian_determinant
from .optim import Adam
from ..nifti import voxel_sizes
from .pyramid import foreground_mask, image_data, normalise
from .resample import resample
from .similarity import lncc

SQUARINGS = 7
INVERSE_ITERS = 20


@dataclass
class Grid:
    """Axis-aligned RAS grid: world = origin + spacing * index."""
    origin: np.ndarray
    spacing: float
    shape: tuple

    @property
    def affine(self):
        a = np.diag([self.spacing] * 3 + [1.0])
        a[:3, 3] = self.origin
        return a

    def to_norm(self) -> torch.Tensor:
        """mm -> grid_sample units per RAS axis (align_corners=True)."""
        return torch.tensor([2.0 / (self.spacing * max(n - 1, 1)) for n in self.shape], dtype=torch.float32)


def _working_grid(mask: np.ndarray, affine, spacing, margin_mm=8.0) -> Grid:
    ijk = np.argwhere(mask)
    corners = np.array([[a, b, c] for a in (ijk[:, 0].min(), ijk[:, 0].max())
                        for b in (ijk[:, 1].min(), ijk[:, 1].max()) for c in (ijk[:, 2].min(), ijk[:, 2].max())])
    world = corners @ affine[:3, :3].T + affine[:3, 3]
    lo, hi = world.min(0) - margin_mm, world.max(0) + margin_mm
    shape = tuple(int(math.ceil((h - l) / spacing)) + 1 for l, h in zip(lo, hi))
    return Grid(lo, spacing, shape)


def _identity(shape) -> torch.Tensor:
    """grid_sample identity grid (1, X, Y, Z, 3) in (z, y, x) order."""
    axes = [torch.linspace(-1, 1, n) for n in shape]
    x, y, z = torch.meshgrid(*axes, indexing="ij")
    return torch.stack([z, y, x], -1)[None]


def _warp(img: torch.Tensor, u_norm: torch.Tensor, ident: torch.Tensor, mode="bilinear") -> torch.Tensor:
    """Pull (1, C, X, Y, Z) through x -> x + u; ``u_norm`` (1, 3, X, Y, Z) in grid units."""
    grid = ident + u_norm.permute(0, 2, 3, 4, 1).flip(-1)
    return F.grid_sample(img, grid, mode=mode, padding_mode="border", align_corners=True)


def exp_velocity(v_norm: torch.Tensor, ident: torch.Tensor, squarings: int = SQUARINGS) -> torch.Tensor:
    """Scaling and squaring: displacement of exp(v), both (1, 3, X, Y, Z) in grid units."""
    u = v_norm / 2 ** squarings
    for _ in range(squarings):
        u = u + _warp(u, u, ident)
    return u


def refine_inverse(u: torch.Tensor, u_inv: torch.Tensor, ident: torch.Tensor, scale: torch.Tensor,
                   iters: int = INVERSE_ITERS) -> torch.Tensor:
    """Make ``u_inv`` (started at exp(-v)) invert ``u`` where exp(-v) alone does not: fixed-point
    steps ``w(x) <- -u(x + w(x))``, each voxel keeping the iterate with the smallest residual
    ``|w(x) + u(x + w(x))|`` (mm). exp(-v) inverts exp(v) only as well as scaling and squaring
    integrates a rough velocity: on a real T1w -> template warp its round trip was ~1 mm."""
    def residual(w):
        return ((w + _warp(u, w, ident)) / scale).norm(dim=1, keepdim=True)

    best, best_res, w = u_inv, residual(u_inv), u_inv
    for _ in range(iters):
        w = -_warp(u, w, ident)
        res = residual(w)
        better = res < best_res
        best, best_res = torch.where(better, w, best), torch.where(better, res, best_res)
    return best


def _grad_mm(u_mm: torch.Tensor, spacing: float) -> list[torch.Tensor]:
    """Forward differences of a (1, 3, X, Y, Z) field along x, y, z (cropped to a common size)."""
    dx = (u_mm[:, :, 1:, :-1, :-1] - u_mm[:, :, :-1, :-1, :-1]) / spacing
    dy = (u_mm[:, :, :-1, 1:, :-1] - u_mm[:, :, :-1, :-1, :-1]) / spacing
    dz = (u_mm[:, :, :-1, :-1, 1:] - u_mm[:, :, :-1, :-1, :-1]) / spacing
    return [dx, dy, dz]


def _det_jacobian(grads) -> torch.Tensor:
    """det(I + du/dx) from ``_grad_mm``'s three (1, 3 components, ...) derivatives. Unbound once per
    derivative: indexing a stacked (1, 3, 3, ...) Jacobian 30 times made autograd fill 30 zero
    tensors of its full size, half of an SVF iteration's time on a CPU."""
    (j00, j10, j20), (j01, j11, j21), (j02, j12, j22) = (g.unbind(1) for g in grads)
    j00, j11, j22 = j00 + 1, j11 + 1, j22 + 1
    return (j00 * (j11 * j22 - j12 * j21)
            - j01 * (j10 * j22 - j12 * j20)
            + j02 * (j10 * j21 - j11 * j20))


class Siren(torch.nn.Module):
    """NeVF velocity network: 5 linear layers with sine activations (SIREN init)."""

    def __init__(self, hidden=64, layers=5, omega=30.0):
        super().__init__()
        dims = [3] + [hidden] * (layers - 1) + [3]
        self.linears = torch.nn.ModuleList(torch.nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))
        self.omega = omega
        with torch.no_grad():
            for i, lin in enumerate(self.linears):
                bound = 1 / dims[i] if i == 0 else math.sqrt(6 / dims[i]) / omega
                lin.weight.uniform_(-bound, bound)
            self.linears[-1].weight.mul_(1e-2)  # start near the identity
            self.linears[-1].bias.zero_()

    def forward(self, x):
        for lin in self.linears[:-1]:
            x = torch.sin(self.omega * lin(x))
        return self.linears[-1](x)


@dataclass
class DiffeoResult:
    affine: np.ndarray                 # fixed -> moving pull matrix (the linear stage)
    field: DisplacementField           # exp(v): fixed-space deformation
    inverse_field: DisplacementField   # exp(-v)
    velocity: np.ndarray               # (X, Y, Z, 3) RAS mm on field.affine's grid
    stats: dict = dc_field(default_factory=dict)

    @property
    def chain(self):
        """Pull chain fixed -> moving for ``resample.resample`` / ``map_points``."""
        return [self.field, self.affine]

    @property
    def inverse_chain(self):
        """Pull chain moving -> fixed (bring template/atlas images into native space)."""
        return [np.linalg.inv(self.affine), self.inverse_field]

    def to_nifti(self) -> nib.Nifti1Image:
        return self.field.to_nifti()


DEFAULTS = {
    "svf": dict(lr=0.5, lambda_smooth=0.1, lambda_jac=1000.0, iters=(150, 100, 60)),
    "nevf": dict(lr=1e-4, lambda_smooth=0.1, lambda_jac=100.0, iters=(300,)),
}


def fields_from_velocity(velocity_mm: np.ndarray, grid_affine: np.ndarray):
    """exp(v) and exp(-v) of a (X, Y, Z, 3) RAS-mm velocity on an axis-aligned isotropic grid,
    integrated at full resolution; returns two DisplacementFields."""
    spacing = float(grid_affine[0, 0])
    grid = Grid(np.asarray(grid_affine)[:3, 3], spacing, velocity_mm.shape[:3])
    scale = _scale(grid, "cpu")
    v = torch.from_numpy(np.ascontiguousarray(velocity_mm, dtype=np.float32)).permute(3, 0, 1, 2)[None]
    ident = _identity(grid.shape)
    with torch.no_grad():
        out = [exp_velocity(sign * v * scale, ident) / scale for sign in (1, -1)]
    return [DisplacementField(u[0].permute(1, 2, 3, 0).numpy(), grid.affine) for u in out]


def _half(shape):
    return tuple(max(2, (n + 1) // 2) for n in shape)


def _integrate(v_norm: torch.Tensor, shape) -> torch.Tensor:
    """exp(v) on the velocity's own (half-resolution) grid, upsampled to ``shape``.
    grid_sample units do not depend on resolution (align_corners=True), so no rescaling."""
    u = exp_velocity(v_norm, _identity(v_norm.shape[2:]).to(v_norm.device))
    return F.interpolate(u, size=shape, mode="trilinear", align_corners=True)


# the finest working grid: the images' own resolution, down to 1 mm on either device (issue 13: since
# 0.7.2 a 1 mm T1w -> 1 mm template costs ~400 CPU s, 1/8 of antsRegistrationSyN[s]; 1.5 mm before)
FINEST_MM = {"cpu": 1.0, "cuda": 1.0}
COARSEST_FINEST_MM = 2.0  # never coarser than before (images of 2 mm and more keep 2 mm)


def finest_spacing(moving: nib.Nifti1Image, fixed: nib.Nifti1Image, device="cpu") -> float:
    """The finest SVF level for this pair: the coarser image's voxel size, at least the device's
    floor (``FINEST_MM``), at most 2 mm (docs/benchmarks-registration.md, "Real T1w -> template")."""
    floor = FINEST_MM.get(torch.device(device).type, FINEST_MM["cpu"])
    res = max(float(voxel_sizes(moving.affine).min()), float(voxel_sizes(fixed.affine).min()))
    return float(min(max(res, floor), COARSEST_FINEST_MM))


def register_diffeomorphic(moving: nib.Nifti1Image, fixed: nib.Nifti1Image, affine_init: np.ndarray,
                           method: str = "svf", fixed_mask=None, device="cpu", sloppy=False,
                           spacing: float | None = None, moving_mask=None, seed: int = 0,
                           **options) -> DiffeoResult:
    """Deformable registration after ``affine_init`` (fixed -> moving pull matrix).

    ``fixed_mask`` (fixed grid) sets the working-grid extent (default: fixed foreground);
    ``moving_mask`` (moving grid) zeroes the moving image outside it, e.g. a T1w with skull
    against a skull-stripped template: ``linear.brain_mask_from_template(t1w, mask, affine, 3)``.
    ``spacing``: finest working-grid spacing (default 2 mm, 3 mm when ``sloppy``); the
    velocity lives on a grid twice as coarse (integrated there, then upsampled). Options
    override ``DEFAULTS[method]`` (lr, lambda_smooth, lambda_jac, iters per level).
    """
    if method not in DEFAULTS:
        raise ValueError(f"method must be 'svf' or 'nevf', got {method!r}")
    opts = {**DEFAULTS[method], **options}
    f_data, f_aff = image_data(fixed)
    m_data, m_aff = image_data(moving)
    f_sel = (np.asanyarray(fixed_mask.dataobj) > 0) if fixed_mask is not None else foreground_mask(f_data, 0.05)
    if moving_mask is not None:
        keep = np.asanyarray(moving_mask.dataobj) > 0
        m_data = np.where(keep, m_data, 0).astype(np.float32)
        m_data = normalise(m_data, keep)
    else:
        m_data = normalise(m_data)
    f_data = normalise(f_data)
    finest = spacing or (3.0 if sloppy else 2.0)
    levels = [2 * finest, 1.5 * finest, finest] if method == "svf" else [finest]
    iters = list(opts["iters"])[-len(levels):]
    if sloppy:
        levels, iters = levels[-2:], [max(20, it // 2) for it in iters[-2:]]
    affine_init = np.asarray(affine_init, dtype=float)

    v, grid = None, None  # v: velocity in grid_sample units on the half-resolution grid
    for spacing_l, n_iter in zip(levels, iters):
        new = _working_grid(f_sel, f_aff, spacing_l)
        if v is not None:  # carry the velocity over to the finer grid (in mm, then back)
            v_mm = F.interpolate(v, size=grid.shape, mode="trilinear", align_corners=True) / _scale(grid, device)
            v_mm = _regrid(v_mm, grid, new, device)
            v = F.interpolate(v_mm * _scale(new, device), size=_half(new.shape), mode="trilinear",
                              align_corners=True)
        grid = new
        fix = _on_grid(f_data, f_aff, grid, [], spacing_l, device)
        mov = _on_grid(m_data, m_aff, grid, [affine_init], spacing_l, device)
        if method == "svf":
            v = _fit_svf(fix, mov, grid, v, n_iter, opts)
        else:
            v = _fit_nevf(fix, mov, grid, n_iter, opts, device, seed=seed)

    with torch.no_grad():
        scale = _scale(grid, device)
        ident = _identity(grid.shape).to(device)
        u = _integrate(v, grid.shape)
        u_inv = refine_inverse(u, _integrate(-v, grid.shape), ident, scale)
        fix = _on_grid(f_data, f_aff, grid, [], grid.spacing, device)
        mov = _on_grid(m_data, m_aff, grid, [affine_init], grid.spacing, device)
        before = float(lncc(fix, mov))
        after = float(lncc(fix, _warp(mov, u, ident)))
        v_mm = F.interpolate(v, size=grid.shape, mode="trilinear", align_corners=True) / scale
    to_np = lambda t: t[0].permute(1, 2, 3, 0).cpu().numpy()  # noqa: E731
    u_mm, u_inv_mm = to_np(u / scale), to_np(u_inv / scale)
    det = jacobian_determinant(u_mm, [grid.spacing] * 3)
    inside = _on_grid(f_sel.astype(np.float32), f_aff, grid, [], 0, "cpu")[0, 0].numpy() > 0.5
    stats = {"method": method, "spacing_mm": grid.spacing, "lncc_before": before, "lncc_after": after,
             "jacobian_negative_fraction": float((det <= 0).mean()),
             "jacobian_negative_fraction_mask": float((det[inside] <= 0).mean()) if inside.any() else 0.0,
             "jacobian_min": float(det.min()), "jacobian_max": float(det.max())}
    return DiffeoResult(affine_init, DisplacementField(u_mm, grid.affine),
                        DisplacementField(u_inv_mm, grid.affine), to_np(v_mm), stats)


def _scale(grid: Grid, device) -> torch.Tensor:
    return grid.to_norm().view(1, 3, 1, 1, 1).to(device)


def _on_grid(data, affine, grid: Grid, chain, smooth_mm, device) -> torch.Tensor:
    """Resample (through ``chain``) onto the working grid, pre-smoothed to its spacing."""
    if smooth_mm > 0:
        sig = [math.sqrt(max((0.42 * smooth_mm) ** 2 - (0.42 * v) ** 2, 0)) / v for v in voxel_sizes(affine)]
        data = ndimage.gaussian_filter(data, sig, truncate=3.0)
    out = resample(data, affine, grid.shape, grid.affine, chain, order=1)
    return torch.from_numpy(out.astype(np.float32))[None, None].to(device)


def _regrid(v_mm: torch.Tensor, old: Grid, new: Grid, device) -> torch.Tensor:
    """A (1, 3, ...) field in mm resampled onto another grid of the same space (zero outside)."""
    pts = torch.from_numpy(new.affine[:3, :3] @ np.indices(new.shape).reshape(3, -1) + new.affine[:3, 3:4])
    norm = (pts.T.float() - torch.tensor(old.origin, dtype=torch.float32)) * old.to_norm() - 1
    return F.grid_sample(v_mm, norm.flip(-1).view(1, *new.shape, 3).to(device), align_corners=True,
                         padding_mode="zeros")


def _loss(fix, mov, u_norm, scale, spacing, opts):
    warped = _warp(mov, u_norm, _identity(fix.shape[2:]).to(fix.device))
    grads = _grad_mm(u_norm / scale, spacing)
    smooth = sum((g ** 2).sum(1).mean() for g in grads)
    neg = F.relu(-_det_jacobian(grads)).mean()
    return -lncc(fix, warped) + opts["lambda_smooth"] * smooth + opts["lambda_jac"] * neg


def _fit_svf(fix, mov, grid, v, iters, opts):
    scale = _scale(grid, fix.device)
    v = torch.zeros((1, 3) + _half(grid.shape), device=fix.device) if v is None else v.clone()
    v.requires_grad_(True)
    # Adam steps are in grid units; lr is given in mm
    opt = Adam(v, lr=opts["lr"] * float(scale.mean()), iters=iters)
    with torch.enable_grad():
        for _ in range(iters):
            _loss(fix, mov, _integrate(v, grid.shape), scale, grid.spacing, opts).backward()
            opt.step()
    return v.detach()


def _fit_nevf(fix, mov, grid, iters, opts, device, step=3, seed=0):
    """Velocity from a SIREN on a coarse grid (every ``step`` voxels), upsampled trilinearly."""
    torch.manual_seed(seed)
    net = Siren().to(device)
    scale = _scale(grid, device)
    coarse = tuple(max(2, math.ceil(n / step)) for n in grid.shape)
    axes = [torch.linspace(-1, 1, n, device=device) for n in coarse]
    coords = torch.stack(torch.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)
    opt = Adam(list(net.parameters()), lr=opts["lr"], iters=iters, lr_min_frac=1.0)

    def velocity():  # network output in cm, as grid units on the half-resolution grid
        v_mm = net(coords).T.reshape(1, 3, *coarse) * 10.0
        return F.interpolate(v_mm, size=_half(grid.shape), mode="trilinear", align_corners=True) * scale

    with torch.enable_grad():
        for _ in range(iters):
            _loss(fix, mov, _integrate(velocity(), grid.shape), scale, grid.spacing, opts).backward()
            opt.step()
    with torch.no_grad():
        return velocity()
