"""Per-label summaries of a segmentation: volumes and mean BOLD time series (streamed)."""
from __future__ import annotations

import nibabel as nib
import numpy as np
import pandas as pd


def read_lut(tsv) -> pd.DataFrame:
    """A BIDS dseg lookup table (index, name, abbreviation, color)."""
    return pd.read_csv(tsv, sep="\t", dtype={"index": int})


def label_volumes(dseg: nib.Nifti1Image, lut: pd.DataFrame) -> pd.DataFrame:
    """Volume (mm^3 and voxels) of every label of ``lut`` present in ``dseg``."""
    labels = np.asarray(dseg.dataobj).astype(int)
    counts = np.bincount(labels.ravel(), minlength=int(lut["index"].max()) + 1)
    voxel_mm3 = float(abs(np.linalg.det(dseg.affine[:3, :3])))
    rows = [{"index": int(i), "name": n, "voxels": int(counts[i]),
             "volume_mm3": round(counts[i] * voxel_mm3, 3)}
            for i, n in zip(lut["index"], lut["name"]) if counts[i] > 0]
    return pd.DataFrame(rows, columns=["index", "name", "voxels", "volume_mm3"])


def label_timeseries(series: nib.Nifti1Image, dseg: nib.Nifti1Image, lut: pd.DataFrame) -> pd.DataFrame:
    """Mean signal of every label present, one column per label (named from the LUT), one row per
    volume; the series is read one volume at a time. ``dseg`` must be on the series' grid."""
    labels = np.asarray(dseg.dataobj).astype(int)
    if labels.shape != series.shape[:3]:
        raise ValueError(f"labels {labels.shape} are not on the series grid {series.shape[:3]}")
    names = dict(zip(lut["index"], lut["name"]))
    present = [i for i in np.unique(labels) if i > 0 and i in names]
    flat = labels.ravel()
    counts = np.bincount(flat, minlength=max(present, default=0) + 1)
    rows = []
    for t in range(series.shape[3]):
        vol = np.asarray(series.dataobj[..., t], dtype=np.float64).ravel()
        sums = np.bincount(flat, weights=vol, minlength=len(counts))
        rows.append([sums[i] / counts[i] for i in present])
    return pd.DataFrame(rows, columns=[names[i] for i in present])
