"""BOLD reference volume and brain mask."""
from __future__ import annotations

import nibabel as nib
import numpy as np


def bold_reference(bold: nib.Nifti1Image, max_volumes: int = 50):
    """Median of the motion-robust volumes of a run, and an EPI brain mask.

    Volumes are ranked by their RMS difference from the run's median (a DVARS-like score of
    head motion and spikes); the median of the quieter half (at most ``max_volumes``) is the
    reference.  Returns ``(reference, mask, selected_volume_indices)``.
    """
    from nilearn.masking import compute_epi_mask

    n = bold.shape[3]
    # Look at most ``4 * max_volumes`` evenly spaced volumes: memory stays bounded on long runs.
    idx = np.unique(np.linspace(0, n - 1, min(n, 4 * max_volumes)).round().astype(int))
    data = np.stack([np.asarray(bold.dataobj[..., int(t)], dtype=np.float32) for t in idx], axis=-1)
    median = np.median(data, axis=-1)
    scale = max(float(np.percentile(median, 98)), 1e-6)
    score = np.sqrt(np.mean(((data - median[..., None]) / scale) ** 2, axis=(0, 1, 2)))
    keep = np.argsort(score)[: max(1, min(max_volumes, (len(idx) + 1) // 2))]
    ref = np.median(data[..., np.sort(keep)], axis=-1).astype(np.float32)
    ref_img = nib.Nifti1Image(ref, bold.affine)
    ref_img.header.set_xyzt_units("mm")
    mask = compute_epi_mask(ref_img)
    mask = nib.Nifti1Image(np.asarray(mask.dataobj).astype(np.uint8), bold.affine)
    return ref_img, mask, idx[np.sort(keep)]
