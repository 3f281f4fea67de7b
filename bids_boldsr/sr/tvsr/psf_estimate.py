"""Which point-spread function made this run? Chosen from the data, for data consistency.

The scanner's PSF is unknown (k-space truncation or voxel averaging in-plane, a box or Gaussian
slice profile, a gap). The learned prior does not need it, but data consistency does: pulling the
output towards ``B y = x`` under the wrong ``B`` costs more than it gains (docs/benchmarks-sr.md).
Given the prior's estimate ``y`` of the fine image, the member of the PSF family (``family_grid``)
whose ``B y`` is closest to the acquired ``x`` (RMS over the volume) is taken as the run's PSF.
Near-equal candidates (a Gaussian slice profile 0.8 spacings wide and a box of 1.0) are not always
told apart; the benchmark measures what the choice costs against data consistency under the true PSF.
"""
from __future__ import annotations

from dataclasses import asdict

import numpy as np

from .acquisition import AcquisitionModel
from .psf_family import family_grid


def estimate_acquisition(y: np.ndarray, x: np.ndarray, assumed: AcquisitionModel):
    """``(best model, table)``: ``table`` lists every candidate with its RMS residual, best first."""
    y, x = np.asarray(y, np.float32), np.asarray(x, np.float32)
    table = sorted(((float(np.sqrt(np.mean((c.apply(y, x.shape) - x) ** 2))), c) for c in family_grid(assumed)),
                   key=lambda row: row[0])
    return table[0][1], table


def estimate_record(table, top: int = 3) -> dict:
    """Sidecar entries: the chosen model and the runners-up with their residuals (relative to the
    run's robust scale, so comparable between runs)."""
    return {"EstimatedAcquisitionModel": asdict(table[0][1]),
            "AcquisitionModelCandidates": [{**asdict(c), "residual": round(r, 6)} for r, c in table[:top]],
            "AcquisitionModelCandidatesTried": len(table)}
