"""A family of plausible BOLD point-spread functions, for training that must not depend on knowing
the scanner's: in-plane voxel averaging or k-space truncation (Tukey apodisation 0-0.5 of the outer
k-space), a box or Gaussian slice profile 0.8-1.3 slice spacings thick (a gap below 1)."""
from __future__ import annotations

import numpy as np

from .acquisition import AcquisitionModel

THICKNESS = (0.8, 1.3)
APODISATION = (0.0, 0.5)


def random_acquisition(rng: np.random.Generator, slice_axis: int | None = 2) -> AcquisitionModel:
    """One draw from the family (``rng`` makes it reproducible)."""
    kspace = bool(rng.random() < 0.5)
    return AcquisitionModel(slice_axis=2 if slice_axis is None else slice_axis,
                            inplane="kspace" if kspace else "box",
                            apodisation=float(rng.uniform(*APODISATION)) if kspace else 0.0,
                            profile=str(rng.choice(["box", "gaussian"])),
                            thickness_ratio=float(rng.uniform(*THICKNESS)))


def family_grid(assumed: AcquisitionModel) -> list[AcquisitionModel]:
    """The family on a grid (thickness every 0.1, apodisation every 0.125), plus ``assumed`` (the
    header's model): the candidates ``psf_estimate`` chooses from."""
    thick = np.round(np.arange(THICKNESS[0], THICKNESS[1] + 1e-6, 0.1), 3)
    apod = np.round(np.arange(APODISATION[0], APODISATION[1] + 1e-6, 0.125), 3)
    slices = [(p, float(t)) for p in ("box", "gaussian") for t in thick]
    if assumed.slice_axis is None:  # every axis in-plane: the slice profile plays no part
        slices = [(assumed.profile, assumed.thickness_ratio)]
    grid = [AcquisitionModel(slice_axis=assumed.slice_axis, inplane=inplane, apodisation=float(a),
                             profile=profile, thickness_ratio=t)
            for inplane, apods in (("box", [0.0]), ("kspace", apod)) for a in apods for profile, t in slices]
    return grid if assumed in grid else grid + [assumed]
