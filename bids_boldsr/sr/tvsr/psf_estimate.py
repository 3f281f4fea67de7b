"""Which point-spread function made this run? Chosen from the data, for data consistency.

The scanner's PSF is unknown (k-space truncation or voxel averaging in-plane, a box or Gaussian
slice profile, a gap). The learned prior does not need it, but data consistency does: pulling the
output towards ``B y = x`` under the wrong ``B`` costs more than it gains (docs/benchmarks-sr.md).

1. Residuals: every member of the PSF family (``family_grid``) is applied to the prior's estimate
   ``y`` of the fine image; ``|B y - x|`` (RMS over the volume) ranks them.
2. Calibration by simulation (``calibrate`` > 0). The least residual is biased: the prior, not told
   the PSF, undoes a blur typical of its training family, so for the narrowest PSFs ``y`` is too
   sharp and a wider ``B`` fits it better (a Gaussian 0.8 spacings wide chosen for a box of 1.0).
   Each of the ``calibrate`` best candidates ``c`` is taken in turn as the truth: ``y`` is acquired
   again under ``c`` and given to the prior (``reestimate``), and the residuals of that estimate
   under every candidate are what the ranking would look like if ``c`` were the run's PSF. The
   candidate whose simulation puts the same member first as the data do is kept; among several,
   the one whose log-residual profile is closest to the data's. When none does, the least residual
   stands.
"""
from __future__ import annotations

from dataclasses import asdict
from typing import Callable

import numpy as np

from .acquisition import AcquisitionModel
from .psf_family import family_grid


def _residuals(y: np.ndarray, x: np.ndarray, candidates) -> np.ndarray:
    return np.array([np.sqrt(np.mean((c.apply(y, x.shape) - x) ** 2)) for c in candidates])


def _log(residuals) -> np.ndarray:
    return np.log(np.maximum(residuals, 1e-12))  # an exact fit has residual 0


def _distinct(table):
    """Candidates with distinct residuals (some grid members are the same ``B``: at x2 every box
    slice profile up to one spacing averages the same two fine voxels)."""
    seen, rows = set(), []
    for r, c in table:
        if round(r, 9) not in seen:
            seen.add(round(r, 9))
            rows.append((r, c))
    return rows


def estimate_acquisition(y: np.ndarray, x: np.ndarray, assumed: AcquisitionModel,
                         reestimate: Callable[[np.ndarray], np.ndarray] | None = None, calibrate: int = 0):
    """``(chosen model, table, calibration)``: ``table`` lists every candidate with its RMS residual,
    best first; ``calibration`` (None without ``reestimate``/``calibrate``) records the simulation:
    ``reestimate(x_sim)`` must return the prior's estimate of the fine image from an LR volume."""
    y, x = np.asarray(y, np.float32), np.asarray(x, np.float32)
    candidates = family_grid(assumed)
    table = sorted(zip(_residuals(y, x, candidates).tolist(), candidates), key=lambda row: row[0])
    if reestimate is None or calibrate <= 0:
        return table[0][1], table, None
    distinct = _distinct(table)
    models = [c for _, c in distinct]
    observed = _log([r for r, _ in distinct])
    profiles = []
    for truth in models[:calibrate]:
        x_sim = truth.apply(y, x.shape)
        profiles.append(_log(_residuals(reestimate(x_sim), x_sim, models)))
    profiles = np.array(profiles)
    centred = lambda v: v - v.mean(-1, keepdims=True)  # noqa: E731 (the profile's shape, not its level)
    distance = ((centred(profiles) - centred(observed)) ** 2).sum(1)
    same_first = np.argmin(profiles, axis=1) == 0  # the data's least residual is models[0]
    pick = int(np.argmin(np.where(same_first, distance, np.inf))) if same_first.any() else 0
    calibration = {"simulated": [asdict(c) for c in models[:calibrate]],
                   "same_least_residual": same_first.tolist(),
                   "profile_distance": [round(float(d), 6) for d in distance],
                   "least_residual": asdict(models[0]), "chosen": asdict(models[pick])}
    return models[pick], table, calibration


def estimate_record(table, calibration=None, top: int = 3) -> dict:
    """Sidecar entries: the chosen model, the candidates with the least residuals (relative to the
    run's robust scale, so comparable between runs) and, when calibrated, the simulation."""
    chosen = calibration["chosen"] if calibration else asdict(table[0][1])
    record = {"EstimatedAcquisitionModel": chosen,
              "AcquisitionModelCandidates": [{**asdict(c), "residual": round(r, 6)} for r, c in table[:top]],
              "AcquisitionModelCandidatesTried": len(table)}
    if calibration:
        record["AcquisitionModelCalibration"] = calibration
    return record
