"""Functional fidelity of a super-resolved series: its first-level GLM z-maps against the original's.

A sharper image that damages the activation map is a loss, so ``bids-boldsr-bench sr --glm`` fits
the same nilearn ``FirstLevelModel`` (the run's own events, Glover HRF, cosine drift 1/128 Hz, AR(1),
no smoothing) to the original run and to each method's SR of the degraded run, on the same grid and
brain mask, and scores every contrast by the Pearson r of the z-maps inside the mask and the Dice of
|z| > 3.1.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

Z_THRESHOLD = 3.1
GLM_DOC = ("nilearn FirstLevelModel: the run's events, Glover HRF, cosine drift (high-pass 1/128 Hz), AR(1), "
           "no smoothing, no signal scaling, the bench's brain mask; z-maps compared inside the mask")


def contrasts(trial_types) -> dict[str, str]:
    """Each condition against the mean of the others (a category localizer's contrasts), and all
    conditions against baseline."""
    names = sorted(set(trial_types))
    out = {}
    for name in names:
        others = [o for o in names if o != name]
        if others:
            out[f"{name}-others"] = f"{name} - ({' + '.join(others)}) / {len(others)}"
    out["all-baseline"] = f"({' + '.join(names)}) / {len(names)}"
    return out


def glm_zmaps(series: np.ndarray, affine, mask: np.ndarray, events: pd.DataFrame, t_r: float) -> dict:
    """z-map (3-D array) of every contrast for a 4-D series."""
    import nibabel as nib
    from nilearn.glm.first_level import FirstLevelModel

    model = FirstLevelModel(t_r=t_r, hrf_model="glover", drift_model="cosine", high_pass=1 / 128,
                            noise_model="ar1", smoothing_fwhm=None, minimize_memory=True,
                            mask_img=nib.Nifti1Image(mask.astype(np.uint8), affine), signal_scaling=0)
    model.fit(nib.Nifti1Image(np.asarray(series, np.float32), affine),
              events=events[["onset", "duration", "trial_type"]])
    return {name: np.asarray(model.compute_contrast(expr, output_type="z_score").dataobj, np.float32)
            for name, expr in contrasts(events["trial_type"]).items()}


def zmap_agreement(ref: np.ndarray, test: np.ndarray, mask: np.ndarray, threshold: float = Z_THRESHOLD) -> dict:
    """Pearson r inside ``mask`` and Dice of ``|z| > threshold`` (NaN when neither map has any)."""
    a, b = ref[mask].astype(float), test[mask].astype(float)
    r = float(np.corrcoef(a, b)[0, 1])
    sa, sb = np.abs(a) > threshold, np.abs(b) > threshold
    total = sa.sum() + sb.sum()
    dice = float(2 * (sa & sb).sum() / total) if total else float("nan")
    return {"r": r, "dice": dice, "suprathreshold_ref": int(sa.sum()), "suprathreshold": int(sb.sum())}


def score_series(ref_z: dict, series, affine, mask, events, t_r) -> dict:
    """Agreement of ``series``' z-maps with ``ref_z`` per contrast."""
    z = glm_zmaps(series, affine, mask, events, t_r)
    return {name: zmap_agreement(ref_z[name], z[name], mask) for name in ref_z}
