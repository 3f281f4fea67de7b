"""Linear (rigid / similarity / affine) registration in torch.

``register_linear`` returns a 4x4 matrix in world RAS mm mapping points of the *fixed* image
to points of the *moving* image (the ITK/ANTs "pull" convention of ``resample.py``).

Method: intensities scaled to [0, 1]; a Gaussian pyramid (8, 4, 2 mm, never finer than the
coarser image); at each level a fixed random subset of fixed-image voxel centres (inside
``fixed_mask`` when given) is mapped into the moving image and sampled with ``grid_sample``;
Adam maximises Parzen mutual information (cross-contrast) or NCC (same contrast).
"""
from __future__ import annotations

import math

import nibabel as nib
import numpy as np
import torch
from scipy import ndimage

from ..nifti import voxel_sizes
from .pyramid import (centre_of_mass, downsample, image_data, normalise, sample_world,
                      translation, world_to_grid)
from .optim import Adam
from .similarity import mutual_information, ncc, soft_bins

RADIUS_MM = 50.0  # converts rotations/scales/shears to mm at the brain surface for step sizes


def params_to_matrix(q: torch.Tensor, centre: torch.Tensor) -> torch.Tensor:
    """(..., 12) parameters -> (..., 4, 4) matrices ``T(c + t) R S H T(-c)``.

    q = [tx, ty, tz (mm), rx, ry, rz (rad; R = Rz Ry Rx), log-scales (3), shears xy, xz, yz].
    """
    t, r, s, h = q[..., 0:3], q[..., 3:6], q[..., 6:9], q[..., 9:12]
    cx, cy, cz = torch.cos(r).unbind(-1)
    sx, sy, sz = torch.sin(r).unbind(-1)
    one, zero = torch.ones_like(cx), torch.zeros_like(cx)
    rx = torch.stack([one, zero, zero, zero, cx, -sx, zero, sx, cx], -1)
    ry = torch.stack([cy, zero, sy, zero, one, zero, -sy, zero, cy], -1)
    rz = torch.stack([cz, -sz, zero, sz, cz, zero, zero, zero, one], -1)
    shape = q.shape[:-1] + (3, 3)
    rot = rz.reshape(shape) @ ry.reshape(shape) @ rx.reshape(shape)
    shear = torch.stack([one, h[..., 0], h[..., 1], zero, one, h[..., 2], zero, zero, one], -1).reshape(shape)
    lin = rot @ torch.diag_embed(torch.exp(s)) @ shear
    offset = centre + t - (lin @ centre[..., None])[..., 0]
    top = torch.cat([lin, offset[..., None]], -1)
    bottom = torch.zeros(q.shape[:-1] + (1, 4), dtype=q.dtype, device=q.device)
    bottom[..., 0, 3] = 1
    return torch.cat([top, bottom], -2)


def rigid_params(matrix: np.ndarray, centre) -> np.ndarray:
    """Inverse of ``params_to_matrix`` for rigid matrices: [t (mm), r (rad)] about ``centre``."""
    lin = matrix[:3, :3]
    t = matrix[:3, :3] @ centre + matrix[:3, 3] - centre
    ry = math.asin(float(np.clip(-lin[2, 0], -1, 1)))
    rx = math.atan2(lin[2, 1], lin[2, 2])
    rz = math.atan2(lin[1, 0], lin[0, 0])
    return np.array([*t, rx, ry, rz])


def _levels(fixed_aff, moving_aff, sloppy):
    coarse = max(np.median(voxel_sizes(fixed_aff)), np.median(voxel_sizes(moving_aff)))
    finest = max(coarse, 4.0 if sloppy else 2.0)
    return [lv for lv in (8.0, 4.0) if lv > finest * 1.2] + [finest]


def _prepare(img, finest, mask=None):
    """Load, block-average big images towards finest/1.5 mm (0.7 mm T1w -> 1.4 mm) and
    scale intensities; returns (data, affine)."""
    data, aff = image_data(img)
    k = [max(1, int(round(finest / (1.5 * v)))) for v in voxel_sizes(aff)]
    if max(k) > 1:
        data, aff = block_average(data, aff, k)
    sel = None if mask is None else _mask_at(mask, data.shape, aff)
    return normalise(data, sel), aff


def block_average(data, aff, k):
    """``data`` averaged over blocks of ``k`` voxels per axis (the last block may be partial), with
    the affine of the block centres."""
    t = torch.nn.functional.avg_pool3d(torch.from_numpy(data)[None, None], k, k, ceil_mode=True)
    scale = np.diag(list(k) + [1]).astype(float)
    scale[:3, 3] = (np.asarray(k) - 1) / 2.0
    return t[0, 0].numpy(), aff @ scale


def _mask_at(mask, shape, affine) -> np.ndarray:
    """A mask given as (bool array, affine) sampled (nearest) on the voxel centres of a grid."""
    mdata, maff = mask
    vox = np.linalg.inv(maff) @ affine
    return ndimage.affine_transform(mdata.astype(np.uint8), vox, output_shape=tuple(shape), order=0) > 0


def _as_mask(img):
    if img is None:
        return None
    if isinstance(img, tuple):
        return img
    return np.asanyarray(img.dataobj) > 0, np.asarray(img.affine, dtype=float)


class _Level:
    """One pyramid level: fixed sample points/values and the smoothed moving tensor."""

    def __init__(self, fixed, f_aff, f_mask, moving, m_aff, m_mask, spacing, n_points, rng, device):
        ft, f_aff_l = downsample(torch.from_numpy(fixed)[None, None], f_aff, spacing)
        keep = np.ones(ft.shape[2:], bool) if f_mask is None else _mask_at(f_mask, ft.shape[2:], f_aff_l)
        idx = np.flatnonzero(keep)
        if idx.size > n_points:
            idx = np.sort(rng.choice(idx, n_points, replace=False))
        ijk = np.stack(np.unravel_index(idx, keep.shape), 1).astype(float)
        ijk += rng.uniform(-0.5, 0.5, ijk.shape)  # jitter breaks grid aliasing between pyramids
        fvals = ndimage.map_coordinates(ft[0, 0].numpy(), ijk.T, order=1, mode="nearest")
        pts = ijk @ f_aff_l[:3, :3].T + f_aff_l[:3, 3]
        self.points = torch.tensor(pts, dtype=torch.float32, device=device)
        self.fvals = torch.tensor(fvals, dtype=torch.float32, device=device)[None]
        self.fbins = soft_bins(self.fvals)  # fixed samples: their Parzen memberships once per level
        mov, m_aff_l = downsample(torch.from_numpy(moving)[None, None], m_aff, spacing)
        self.moving = mov.to(device)
        self.w2g = torch.tensor(world_to_grid(m_aff_l, mov.shape), dtype=torch.float32, device=device)
        self.mmask = None
        if m_mask is not None:
            self.mmask = torch.from_numpy(m_mask[0].astype(np.float32))[None, None].to(device)
            self.mmask_w2g = torch.tensor(world_to_grid(m_mask[1], m_mask[0].shape), dtype=torch.float32,
                                          device=device)

    def similarity(self, matrix: torch.Tensor, cost: str) -> torch.Tensor:
        pts = (self.points @ matrix[:3, :3].T + matrix[:3, 3])[None]
        vals, w = sample_world(self.moving, self.w2g, pts)
        if self.mmask is not None:
            inmask, _ = sample_world(self.mmask, self.mmask_w2g, pts.detach())
            w = w * (inmask[:, 0] > 0.5)
        if cost == "mi":
            return mutual_information(self.fvals, vals[:, 0], w, f_bins=self.fbins)[0]
        return ncc(self.fvals, vals[:, 0], w)[0]


DOF_ACTIVE = {6: slice(0, 6), 9: slice(0, 9), 12: slice(0, 12)}


def _optimise(level, q, base, centre, dof, cost, spacing, iters):
    """Adam on parameters scaled so one unit moves the brain surface by ``spacing`` mm."""
    scale = torch.full((12,), spacing / RADIUS_MM, dtype=torch.float64)
    scale[:3] = spacing
    scale[DOF_ACTIVE[dof].stop:] = 0
    p = torch.zeros(12, dtype=torch.float64, requires_grad=True)
    opt = Adam(p, lr=0.05, iters=iters)
    base_t = torch.tensor(base, dtype=torch.float64)
    for _ in range(iters):
        m = base_t @ params_to_matrix(q + p * scale, centre)
        (-level.similarity(m.float().to(level.points.device), cost)).backward()
        opt.step()
    with torch.no_grad():
        q = q + p * scale
        final = level.similarity((base_t @ params_to_matrix(q, centre)).float().to(level.points.device), cost)
    return q.detach(), float(final)


START_MM, START_DEG = 12.0, 12.0  # multi-start offsets: beyond the 10 mm / 10 degree starts benchmarked


def start_offsets(n: int, seed: int = 0, mm: float = START_MM, deg: float = START_DEG) -> list[np.ndarray]:
    """The first ``n`` parameter offsets (12,) of the multi-start: none; +-``mm`` along y, z, x;
    +-``deg`` about x, y, z; then seeded random rigid offsets within the same bounds."""
    offs = [np.zeros(12)]
    for k in (1, 2, 0, 3, 4, 5):
        for sign in (1.0, -1.0):
            o = np.zeros(12)
            o[k] = sign * (mm if k < 3 else math.radians(deg))
            offs.append(o)
    rng = np.random.default_rng(seed + 7919)
    while len(offs) < n:
        o = np.zeros(12)
        o[:3], o[3:6] = rng.uniform(-mm, mm, 3), np.deg2rad(rng.uniform(-deg, deg, 3))
        offs.append(o)
    return offs[:max(n, 1)]


def _distinct(trials, centre_t, keep, mm=2.0):
    """The ``keep`` best trials (q, cost, base) by cost whose mappings differ by more than ``mm``
    at six points on a sphere of radius RADIUS_MM about the centre (duplicates of a better one dropped)."""
    probe = centre_t.numpy() + RADIUS_MM * np.vstack([np.eye(3), -np.eye(3)])
    kept, mapped = [], []
    for q, cost, base in sorted(trials, key=lambda t: -t[1]):
        m = base @ params_to_matrix(q, centre_t).numpy()
        pts = probe @ m[:3, :3].T + m[:3, 3]
        if all(np.linalg.norm(pts - o, axis=1).max() > mm for o in mapped):
            kept.append((q, cost, base))
            mapped.append(pts)
        if len(kept) == keep:
            break
    return kept


def _register(f_data, f_aff, m_data, m_aff, f_mask, m_mask, dof, cost, init, device, sloppy, seed,
              n_starts=1, keep=2):
    centre = centre_of_mass(f_data, f_aff, None if f_mask is None else _mask_at(f_mask, f_data.shape, f_aff))
    centre_t = torch.tensor(centre, dtype=torch.float64)
    if init is None:
        m_sel = None if m_mask is None else _mask_at(m_mask, m_data.shape, m_aff)
        shift = centre_of_mass(m_data, m_aff, m_sel) - centre
        inits = [np.eye(4), translation(shift)] if np.linalg.norm(shift) > 5 else [translation(shift)]
    else:
        inits = [np.asarray(init, dtype=float)]
    rng = np.random.default_rng(seed)
    n_points = 10000 if sloppy else 40000
    iters = 60 if sloppy else 120
    offsets = [torch.tensor(o, dtype=torch.float64) for o in start_offsets(n_starts, seed)]
    levels = _levels(f_aff, m_aff, sloppy)
    multi = len(offsets) > 1
    with torch.enable_grad():
        for i, spacing in enumerate(levels):
            level = _Level(f_data, f_aff, f_mask, m_data, m_aff, m_mask, spacing, n_points, rng, device)
            if i == 0 and not multi:  # the better of the scanner and centre-of-mass alignments
                trials = [(*_optimise(level, offsets[0], b, centre_t, dof, cost, spacing, iters), b) for b in inits]
                cands = [max(trials, key=lambda x: x[1])]
            elif i == 0:
                # multi-start: the coarse level's best optimum can be the wrong one (ds-xa30), so every
                # distinct coarse optimum is screened by a short run at the finest spacing (fewer
                # points) and the ``keep`` best by that cost go on through the finer levels
                trials = [(*_optimise(level, o, b, centre_t, dof, cost, spacing, iters // 2), b)
                          for b in inits for o in offsets]
                cands = _distinct(trials, centre_t, len(trials))
                screen = _Level(f_data, f_aff, f_mask, m_data, m_aff, m_mask, levels[-1], n_points // 4,
                                np.random.default_rng(seed + 1), device)
                cands = [(*_optimise(screen, q, b, centre_t, dof, cost, levels[-1], max(iters // 4, 20)), b)
                         for q, _, b in cands]
                cands = _distinct(cands, centre_t, keep)
            else:
                n_it = iters if multi and i == len(levels) - 1 else max(iters // 2 ** i, 30)
                cands = [(*_optimise(level, q, b, centre_t, dof, cost, spacing, n_it), b) for q, _, b in cands]
    q, _, base = max(cands, key=lambda x: x[1])
    return base @ params_to_matrix(q, centre_t).numpy()


def register_linear(moving: nib.Nifti1Image, fixed: nib.Nifti1Image, dof: int = 6, cost: str = "mi",
                    fixed_mask=None, moving_mask=None, init: np.ndarray | None = None,
                    device="cpu", sloppy=False, seed: int = 0, n_starts: int = 1, keep: int = 2) -> np.ndarray:
    """Register ``moving`` to ``fixed``; returns the 4x4 fixed->moving world matrix (pull).

    ``cost``: "mi" (mutual information; EPI vs T1w, T1w vs template) or "ncc" (same contrast).
    Masks are images on any grid: fixed_mask restricts the sampled points, moving_mask drops
    samples that land outside it. ``init``: a starting pull matrix; when None, both the
    scanner alignment (identity) and the centre-of-mass alignment are tried at the coarsest
    level and the better one kept.
    ``n_starts`` > 1: multi-start. Each of those alignments is also started from ``n_starts - 1``
    offsets (``start_offsets``: +-12 mm along and +-12 degrees about each axis, then seeded random
    ones) and optimised at the coarsest level; every distinct coarse optimum is screened by a short
    run at the finest spacing on a quarter of the points, the ``keep`` best by that cost are refined
    through the finer levels (full iterations at the finest) and the best by the finest cost is returned.
    """
    if dof not in DOF_ACTIVE or cost not in ("mi", "ncc"):
        raise ValueError(f"dof must be 6, 9 or 12 and cost 'mi' or 'ncc' (got {dof}, {cost!r})")
    f_mask, m_mask = _as_mask(fixed_mask), _as_mask(moving_mask)
    finest = _levels(fixed.affine, moving.affine, sloppy)[-1]
    f_data, f_aff = _prepare(fixed, finest, f_mask)
    m_data, m_aff = _prepare(moving, finest, m_mask)
    return _register(f_data, f_aff, m_data, m_aff, f_mask, m_mask, dof, cost, init, device, sloppy, seed,
                     n_starts, keep)


def dilate_mask(mask: np.ndarray, affine, mm: float) -> np.ndarray:
    """``mask`` grown by ``mm`` (Euclidean, in the voxel sizes of ``affine``)."""
    if mm <= 0:
        return mask
    return ndimage.distance_transform_edt(~mask, sampling=voxel_sizes(affine)) <= mm


def pull_mask(mask: np.ndarray, mask_aff, shape, affine, matrix) -> np.ndarray:
    """Template-space mask onto a subject grid; ``matrix`` maps template -> subject points."""
    vox = np.linalg.inv(mask_aff) @ np.linalg.inv(matrix) @ affine
    out = ndimage.affine_transform(mask.astype(np.float32), vox, output_shape=tuple(shape[:3]), order=1)
    return out > 0.5


def brain_mask_from_template(t1w_img: nib.Nifti1Image, template_mask_img: nib.Nifti1Image,
                             matrix: np.ndarray, dilate_mm: float = 0.0) -> nib.Nifti1Image:
    """Pull a template brain mask into T1w space (uint8 image on the T1w grid). ``matrix`` is
    the pull matrix of ``register_linear(t1w, template)`` / ``register_to_template`` (maps
    template points to T1w points). ``dilate_mm`` dilates in template space first."""
    mask = np.asanyarray(template_mask_img.dataobj) > 0
    mask = dilate_mask(mask, template_mask_img.affine, dilate_mm)
    out = pull_mask(mask, template_mask_img.affine, t1w_img.shape, t1w_img.affine, matrix)
    hdr = nib.Nifti1Header()
    hdr.set_data_dtype(np.uint8)
    return nib.Nifti1Image(out.astype(np.uint8), t1w_img.affine, hdr)


def register_to_template(t1w: nib.Nifti1Image, template: nib.Nifti1Image, template_mask: nib.Nifti1Image,
                         dof: int = 12, device="cpu", sloppy=False, init=None, seed: int = 0,
                         moving_brain=None, head_atlas=None) -> np.ndarray:
    """T1w with skull -> skull-stripped template (pull matrix template -> T1w); samples inside a
    10 mm dilated template brain mask. Two stages: a first estimate, then samples landing outside the
    template mask pulled back through it (dilated 5 mm) are dropped and the estimate is refined.

    The first estimate comes from
    * ``head_atlas`` (an image of tissue classes in the template's world, e.g.
      ``templates.head_atlas()``; what the workflow passes): the whole T1w matched to a whole head
      (:func:`register_to_head`);
    * else the T1w with skull matched to the skull-stripped template itself. That estimate is not
      corrected when it is too large: on ds-xa30 (bright scalp) the template brain spread over the
      whole head (pulled mask 2940 ml for a template mask of 1900 ml; docs/benchmarks-registration.md).
    ``moving_brain``: a brain mask of the T1w (image or (array, affine), e.g.
    ``segmentation.brain.brain_mask``): the T1w skull-stripped by it, registered in one stage.
    """
    tmask = np.asanyarray(template_mask.dataobj) > 0
    t_aff = np.asarray(template_mask.affine, dtype=float)
    wide = (dilate_mask(tmask, t_aff, 10.0), t_aff)
    finest = _levels(template.affine, t1w.affine, sloppy)[-1]
    f_data, f_aff = _prepare(template, finest, wide)
    m_data, m_aff = _prepare(t1w, finest, None)
    args = (dof, "mi")
    b_data, b_aff = _as_mask(moving_brain) or (None, None)
    if b_data is not None and b_data.any():  # (an empty mask: the network found no brain)
        sel = _mask_at((b_data, b_aff), m_data.shape, m_aff)
        m_data = normalise(m_data, sel) * sel
        return _register(f_data, f_aff, m_data, m_aff, wide, None, *args, init, device, sloppy, seed)
    if head_atlas is not None:
        # never sloppy: at a 4 mm finest level the head stage landed centimetres off on ds-xa30
        # (pulled mask 1967 ml, 2219 ml for a moved template, against 1635 / 1815 at 2 mm), and the
        # sloppy brain stage does not pull it back (2291 / 3786 ml); ~20 CPU s more per template
        m1 = register_to_head(t1w, head_atlas, dof, device, False, init, seed)
    else:
        m1 = _register(f_data, f_aff, m_data, m_aff, wide, None, *args, init, device, sloppy, seed)
    brain = (pull_mask(dilate_mask(tmask, t_aff, 5.0), t_aff, m_data.shape, m_aff, m1), m_aff)
    m_data = normalise(m_data, _mask_at(brain, m_data.shape, m_aff))
    return _register(f_data, f_aff, m_data, m_aff, wide, brain, *args, m1, device, sloppy, seed)


def register_to_head(t1w: nib.Nifti1Image, head_atlas: nib.Nifti1Image, dof: int = 12, device="cpu",
                     sloppy=False, init=None, seed: int = 0) -> np.ndarray:
    """The whole T1w -> a whole-head atlas of tissue classes (pull matrix atlas world -> T1w).

    Mutual information with the class indices spread over [0, 1] (several histogram bins apart) asks
    only that each class have its own intensities, so scalp, skull and fat need no intensity model,
    and a skull-stripped T1w matches too (its zeros explain background and extra-cerebral classes
    alike). Samples: the atlas head dilated 10 mm."""
    classes = np.asanyarray(head_atlas.dataobj).astype(np.int64)
    a_aff = np.asarray(head_atlas.affine, dtype=float)
    values = (classes / max(int(classes.max()), 1)).astype(np.float32)
    head = (dilate_mask(classes > 0, a_aff, 10.0), a_aff)
    finest = _levels(a_aff, t1w.affine, sloppy)[-1]
    m_data, m_aff = _prepare(t1w, finest, None)
    return _register(values, a_aff, m_data, m_aff, head, None, dof, "mi", init, device, sloppy, seed)


def head_atlas_in(head_atlas: nib.Nifti1Image, template: nib.Nifti1Image, template_mask: nib.Nifti1Image,
                  atlas_template: nib.Nifti1Image, atlas_template_mask: nib.Nifti1Image,
                  device="cpu", seed: int = 0) -> nib.Nifti1Image:
    """``head_atlas`` (in ``atlas_template``'s world) moved into ``template``'s world: the two
    skull-stripped templates registered brain to brain (12 dof, MI), the matrix folded into the
    atlas header (no resampling of the classes)."""
    fixed_mask = nib.Nifti1Image(dilate_mask(np.asanyarray(atlas_template_mask.dataobj) > 0,
                                             atlas_template_mask.affine, 10.0).astype(np.uint8),
                                 atlas_template_mask.affine)
    # atlas-template points -> template points (the pull of ``template`` onto the atlas template)
    matrix = register_linear(_masked(template, template_mask), _masked(atlas_template, atlas_template_mask),
                             dof=12, cost="mi", fixed_mask=fixed_mask, device=device, seed=seed)
    return nib.Nifti1Image(np.asanyarray(head_atlas.dataobj), matrix @ head_atlas.affine,
                           head_atlas.header)


def _masked(image, mask):
    data = np.asanyarray(image.dataobj).astype(np.float32)
    inside = _mask_at(_as_mask(mask), data.shape[:3], np.asarray(image.affine, float))
    return nib.Nifti1Image(np.where(inside, data, 0).astype(np.float32), image.affine)
