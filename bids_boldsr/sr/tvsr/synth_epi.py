"""Synthetic BOLD-like training pairs for the learned SR prior (SynthSR-style, from label maps).

A pair is an HR "acquired" EPI volume and its LR version under a PSF drawn from ``psf_family`` at a
random factor. The HR image itself is acquired: a random EPI-like contrast (or any order) on a
head label map, bias field and susceptibility dropout, at a fine isotropic synthesis grid, then
blurred and sampled onto the HR grid (2.5-3.5 mm, itself through a PSF of the family) with noise.
The network learns ``spline(LR) -> clean HR``: no PSF is told, so it has to undo any of them.
Every draw comes from one ``torch.Generator`` (a seed fixes the stream).
"""
from __future__ import annotations

import numpy as np
import torch

from ...segmentation.synth import (LabelMap, _smooth_field, _uniform as _uniform_tensor, sample_geometry,
                                   sample_intensities, signal_dropout)
from .acquisition import coarse_shape_for
from .psf_family import random_acquisition
from .resample import robust_scale, upsample

HR_MM = (2.5, 3.5)         # HR voxel size per axis (mm): the BOLD grids the prior must serve
FACTORS = (1.25, 3.0)      # LR / HR voxel size
HEAD_MM = (200.0, 200.0, 140.0)  # field of view of one synthetic volume (mm)
NOISE = (0.0, 0.03)        # HR noise std, as a fraction of the 99th percentile
OVERSAMPLE = 2             # synthesis grid = HR grid / this


def _uniform(gen, lo, hi) -> float:
    return float(_uniform_tensor(gen, lo, hi))


def _numpy_rng(gen) -> np.random.Generator:
    """A numpy generator seeded from ``gen`` (``random_acquisition`` draws with numpy)."""
    return np.random.default_rng(int(torch.randint(2 ** 62, (), generator=gen)))


def synth_hr_epi(lm: LabelMap, gen) -> np.ndarray:
    """One clean HR BOLD-like volume (float32, ~0-1) on a grid of 2.5-3.5 mm voxels."""
    hr_mm = np.array([_uniform(gen, *HR_MM) for _ in range(3)])
    hr_shape = [int(round(f / z)) for f, z in zip(HEAD_MM, hr_mm)]
    spacing = float(hr_mm.min()) / OVERSAMPLE
    fine_shape = [int(round(n * z / spacing)) for n, z in zip(hr_shape, hr_mm)]
    centre = lm.brain + torch.empty(3).uniform_(-10, 10, generator=gen)
    compact = sample_geometry(lm, centre, fine_shape, spacing, gen)
    contrast = "epi" if torch.rand((), generator=gen) < 0.7 else "random"
    image = signal_dropout(sample_intensities(compact, gen, contrast), spacing, gen, p=0.3)
    bias = _smooth_field(gen, 1, (3, 3, 3), image.shape, _uniform(gen, 0, 0.3))[0]
    image = (image * torch.exp(bias)).clamp(min=0).numpy()
    scanner = random_acquisition(_numpy_rng(gen))  # the HR volume's own PSF
    hr = scanner.apply(image, hr_shape)
    return (hr / robust_scale(hr)).astype(np.float32)


def degrade(hr: np.ndarray, gen, factor: float | None = None):
    """LR of ``hr`` under a random PSF of the family at a random (or given) factor, with noise
    added on the HR grid first (so the LR carries noise as averaged by its own PSF).
    Returns ``(spline(LR) on the HR grid, LR, scale, psf)``: the first two divided by ``scale``,
    the LR's 99th percentile (divide the target by it too), and the PSF drawn."""
    factor = _uniform(gen, *FACTORS) if factor is None else factor
    noisy = hr + _uniform(gen, *NOISE) * torch.randn(hr.shape, generator=gen).numpy()
    psf = random_acquisition(_numpy_rng(gen))
    lr = psf.apply(noisy.astype(np.float32), coarse_shape_for(hr.shape, factor))
    scale = robust_scale(lr)
    return upsample(lr / scale, hr.shape, order=3).astype(np.float32), lr / scale, scale, psf
