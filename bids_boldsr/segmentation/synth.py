"""SynthSeg-style training images synthesised from FreeSurfer aseg label maps.

Every draw goes through one ``torch.Generator`` so a seed fixes the whole stream of samples.
Images are built on axis-aligned RAS world grids (the heads in scanner space are roughly
aligned with the world axes whatever the slice orientation), which is also how inference
resamples an input: see :mod:`bids_boldsr.segmentation.grids`.
"""
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import torch
import torch.nn.functional as F

from .grids import gaussian_blur, normalize, to_working
from .labels import LABELS, N_CLASSES

# aseg values seen in the training label maps, grouped by tissue for contrast priors
WM = (2, 41, 7, 46, 16, 28, 60, 85)
GM = (3, 42, 8, 47, 10, 49, 11, 50, 12, 51, 13, 52, 17, 53, 18, 54, 26, 58)
CSF = (4, 43, 5, 44, 14, 15, 24, 72, 30, 62)
BG, T_WM, T_GM, T_CSF, T_OTHER = range(5)  # tissue ids; OTHER: lesions, skull, fat, eyes, ...
N_ASEG = 1024
# mean intensity per tissue (bg, WM, GM, CSF) for the two physical contrasts; OTHER is drawn freely
PRIORS = {"t1": (0.0, 0.8, 0.55, 0.15), "epi": (0.0, 0.4, 0.6, 0.95)}


def _compact_table():
    """aseg value -> compact index (labels with their own random intensity), and tissue per index."""
    known = sorted({0, *WM, *GM, *CSF, 25, 57, 136, 137, 163, 164, 502, 506, 507, 508, 509, 511,
                    512, 514, 515, 516, 530})
    lut = np.full(N_ASEG, len(known), np.uint8)  # unseen values share one extra index
    lut[known] = np.arange(len(known))
    tissue = [BG if v == 0 else T_WM if v in WM else T_GM if v in GM else T_CSF if v in CSF
              else T_OTHER for v in known] + [T_OTHER]
    target = np.zeros(len(known) + 1, np.int64)
    for lab in LABELS:
        target[known.index(lab.aseg)] = lab.index
    return lut, torch.tensor(tissue), torch.from_numpy(target)


ASEG_TO_COMPACT, TISSUE, COMPACT_TO_TARGET = _compact_table()
N_COMPACT = len(TISSUE)
# brain = not extra-cerebral: what a skull-stripped image keeps
BRAIN = TISSUE != T_OTHER
# targets of the whole-head networks: the cerebellum (locator) or the brain (brain mask) without the
# CSF around it (aseg 24), like the template brain masks it is matched with (GM + WM, ventricles inside)
_COMPACT = torch.arange(N_COMPACT)
HEAD_TARGETS = {"cerebellum": (COMPACT_TO_TARGET > 0).long(),
                "brain": (BRAIN & (_COMPACT != 0) & (_COMPACT != int(ASEG_TO_COMPACT[24]))).long()}


@dataclass
class LabelMap:
    labels: torch.Tensor    # compact indices (uint8), voxel grid of the file
    world_to_vox: torch.Tensor  # 4x4
    cerebellum: torch.Tensor    # world centre of the cerebellum (mm)
    brain: torch.Tensor         # world centre of the brain (mm)
    path: str


def load_label_map(path) -> LabelMap:
    img = nib.load(str(path))
    aseg = np.asanyarray(img.dataobj).astype(np.int64)
    compact = ASEG_TO_COMPACT[np.clip(aseg, 0, N_ASEG - 1)]
    aff = img.affine

    def centre(mask):
        return torch.tensor(nib.affines.apply_affine(aff, np.argwhere(mask).mean(0)), dtype=torch.float32)

    target = COMPACT_TO_TARGET.numpy()[compact]
    return LabelMap(torch.from_numpy(compact), torch.tensor(np.linalg.inv(aff), dtype=torch.float32),
                    centre(target > 0), centre(BRAIN.numpy()[compact] & (aseg > 0)), str(Path(path)))


def _uniform(gen, lo, hi, size=()):
    return lo + (hi - lo) * torch.rand(size, generator=gen)


def _smooth_field(gen, channels, ctrl, shape, scale):
    """Random smooth field: Gaussian noise on a coarse control grid, upsampled trilinearly."""
    coarse = torch.randn((1, channels, *ctrl), generator=gen) * scale
    return F.interpolate(coarse, size=shape, mode="trilinear", align_corners=True)[0]


def _rotation(gen, max_deg):
    a = torch.deg2rad(_uniform(gen, -max_deg, max_deg, (3,)))
    c, s = torch.cos(a), torch.sin(a)
    rx = torch.tensor([[1, 0, 0], [0, c[0], -s[0]], [0, s[0], c[0]]])
    ry = torch.tensor([[c[1], 0, s[1]], [0, 1, 0], [-s[1], 0, c[1]]])
    rz = torch.tensor([[c[2], -s[2], 0], [s[2], c[2], 0], [0, 0, 1]])
    return rz @ ry @ rx


def sample_geometry(lm: LabelMap, centre, shape, spacing, gen, max_deg=15.0, max_scale=0.12,
                    elastic_mm=3.0, epi_mm=5.0):
    """Compact labels on an axis-aligned world grid, through a random affine + elastic map
    and an EPI-like distortion (smooth displacement along one axis, mostly anterior-posterior)."""
    axes = [(torch.arange(n, dtype=torch.float32) - (n - 1) / 2) * spacing for n in shape]
    x = torch.stack(torch.meshgrid(*axes, indexing="ij"), -1)  # world offsets from the centre
    matrix = _rotation(gen, max_deg) @ torch.diag(_uniform(gen, 1 - max_scale, 1 + max_scale, (3,)))
    disp = _smooth_field(gen, 3, (4, 4, 4), shape, float(_uniform(gen, 0, elastic_mm)))
    axis = 1 if torch.rand((), generator=gen) < 0.6 else int(torch.randint(3, (), generator=gen))
    disp[axis] += _smooth_field(gen, 1, (3, 4, 4), shape, float(_uniform(gen, 0, epi_mm)))[0]
    x = x @ matrix.T + disp.permute(1, 2, 3, 0) + centre
    vox = torch.round(x @ lm.world_to_vox[:3, :3].T + lm.world_to_vox[:3, 3]).long()
    dims = torch.tensor(lm.labels.shape)
    inside = ((vox >= 0) & (vox < dims)).all(-1)
    vox = torch.where(inside[..., None], vox, torch.zeros_like(vox))
    labels = lm.labels[vox[..., 0], vox[..., 1], vox[..., 2]]
    return torch.where(inside, labels, torch.zeros_like(labels)).long()


def sample_intensities(compact, gen, contrast=None):
    """Gaussian intensity per label; contrast 't1', 'epi' (CSF bright) or 'random' (any order)."""
    if contrast is None:
        contrast = ["epi", "t1", "random"][int(torch.multinomial(torch.tensor([0.4, 0.2, 0.4]), 1,
                                                                   generator=gen))]
    if contrast == "random":
        means = torch.rand(N_COMPACT, generator=gen)
    else:
        prior = torch.tensor(PRIORS[contrast] + (0.0,))[TISSUE]
        means = (prior + 0.06 * torch.randn(N_COMPACT, generator=gen)).clamp(0, 1)
        means[0] = _uniform(gen, 0, 0.05)
        other = TISSUE == T_OTHER
        means[other] = _uniform(gen, 0, 0.7 if contrast == "t1" else 0.5, (int(other.sum()),))
    stds = _uniform(gen, 0.0, 0.08, (N_COMPACT,))
    compact = compact.long()
    return means[compact] + stds[compact] * torch.randn(compact.shape, generator=gen)


def sample_resolution(gen, spacing, bold_like=None):
    """Acquired voxel size per axis (mm): BOLD-like 2-4 mm in-plane with 2.5-5 mm slices, or 1-3 mm."""
    if bold_like is None:
        bold_like = bool(torch.rand((), generator=gen) < 0.5)
    if bold_like:
        res = _uniform(gen, 2.0, 4.0, (3,))
        res[int(torch.randint(3, (), generator=gen))] = _uniform(gen, 2.5, 5.0)
    else:
        res = _uniform(gen, 1.0, 3.0, (3,))
    return torch.clamp(res, min=spacing)


def acquire(image, spacing, res, gen, noise_max=0.06):
    """Bias field, blur to the acquired resolution, sample there, add noise: the 'scanner' image."""
    bias = _smooth_field(gen, 1, (3, 3, 3), image.shape, float(_uniform(gen, 0, 0.3)))[0]
    image = image * torch.exp(bias)
    sigma = (res / spacing) * _uniform(gen, 0.3, 0.45)  # FWHM ~ voxel size
    image = gaussian_blur(image, torch.where(res > spacing, sigma, torch.zeros(3)))
    lr_shape = [max(2, round(n * spacing / float(r))) for n, r in zip(image.shape, res)]
    lr = F.interpolate(image[None, None], size=lr_shape, mode="trilinear", align_corners=False)[0, 0]
    lr = lr + torch.randn(lr.shape, generator=gen) * _uniform(gen, 0, noise_max)
    return lr.clamp(min=0), torch.tensor([n * spacing / m for n, m in zip(image.shape, lr_shape)])


def signal_dropout(image, spacing, gen, p=0.25):
    """EPI-like susceptibility dropout: a smooth Gaussian hole (radius 8-25 mm, 40-95 % signal loss).
    ``p=0`` draws nothing from ``gen`` (the sample stream of a recipe without dropout is unchanged)."""
    if not p or torch.rand((), generator=gen) >= p:
        return image
    shape = torch.tensor(image.shape, dtype=torch.float32)
    centre = torch.rand(3, generator=gen) * shape
    sigma = float(_uniform(gen, 8.0, 25.0)) / spacing
    axes = [(torch.arange(n, dtype=torch.float32) - c) ** 2 for n, c in zip(image.shape, centre)]
    r2 = axes[0][:, None, None] + axes[1][None, :, None] + axes[2][None, None, :]
    return image * (1 - _uniform(gen, 0.4, 0.95) * torch.exp(-r2 / (2 * sigma ** 2)))


def _finish(image, target, gen, cut_p=0.3):
    """Gamma, optional limited field of view (a slab ending inside the head), then normalisation."""
    image = normalize(image) ** torch.exp(0.25 * torch.randn((), generator=gen))
    if torch.rand((), generator=gen) < cut_p:  # BOLD slabs often clip the inferior cerebellum
        axis = int(torch.randint(3, (), generator=gen))
        n = image.shape[axis]
        cut = int(n * _uniform(gen, 0.1, 0.35))
        sl = [slice(None)] * 3
        sl[axis] = slice(0, cut) if torch.rand((), generator=gen) < 0.5 else slice(n - cut, n)
        image[tuple(sl)] = 0
        target[(slice(None), *sl)] = 0
        target[(0, *sl)] = 1
    return normalize(image), target


def _soft_target(classes, factor, n_classes):
    """One-hot at the synthesis grid, averaged down to the working grid (partial-volume targets)."""
    onehot = F.one_hot(classes, n_classes).permute(3, 0, 1, 2).float()
    return F.avg_pool3d(onehot[None], factor)[0]


def synth_crop(lm: LabelMap, gen, shape=(128, 96, 96), work_mm=2.0, shift_mm=16.0, contrast=None,
               bold_like=None, skull_strip_p=0.3, dropout_p=0.25, cut_p=0.3):
    """One training pair for the segmenter: image (1, *shape/2) at ``work_mm`` and soft targets
    (N_CLASSES, *shape/2), built at 1 mm around the cerebellum with a random offset."""
    centre = lm.cerebellum + _uniform(gen, -shift_mm, shift_mm, (3,))
    compact = sample_geometry(lm, centre, shape, 1.0, gen)
    return _synth_from_compact(compact, gen, 1.0, work_mm, COMPACT_TO_TARGET, N_CLASSES,
                               contrast, bold_like, skull_strip_p, dropout_p, cut_p)


def synth_head(lm: LabelMap, gen, shape=(128, 128, 128), spacing=2.0, work_mm=4.0, shift_mm=25.0,
               contrast=None, skull_strip_p=0.3, dropout_p=0.25, cut_p=0.3, target="cerebellum"):
    """One training pair for a whole-head network at ``work_mm``: ``target`` "cerebellum" (the
    locator) or "brain" (the brain mask, :mod:`.brain`)."""
    centre = lm.brain + _uniform(gen, -shift_mm, shift_mm, (3,))
    compact = sample_geometry(lm, centre, shape, spacing, gen)
    return _synth_from_compact(compact, gen, spacing, work_mm, HEAD_TARGETS[target], 2,
                               contrast, None, skull_strip_p, dropout_p, cut_p)


def _synth_from_compact(compact, gen, spacing, work_mm, to_target, n_classes, contrast, bold_like,
                        skull_strip_p, dropout_p=0.25, cut_p=0.3):
    if torch.rand((), generator=gen) < skull_strip_p:
        compact = torch.where(BRAIN[compact], compact, torch.zeros_like(compact))
    image = signal_dropout(sample_intensities(compact, gen, contrast), spacing, gen, dropout_p)
    lr, lr_zooms = acquire(image, spacing, sample_resolution(gen, spacing, bold_like), gen)
    factor = int(round(work_mm / spacing))
    work_shape = [n // factor for n in compact.shape]
    image = to_working(lr, lr_zooms, work_mm, work_shape)
    target = _soft_target(to_target[compact], factor, n_classes)
    image, target = _finish(image, target, gen, cut_p)
    return image[None], target
