"""Cerebellum figures: lobule labels over an image, and the per-lobule volumes."""
from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np

from . import plotting as P


def lobule_overlay(background_img, dseg_file, out_png, title) -> Path:
    """Axial slices from the bottom to the top of the labelled cerebellum (plus a coronal slice
    through its centre), labels coloured over ``background_img`` (resampled onto the label grid)."""
    import matplotlib
    import matplotlib.pyplot as plt

    dseg = nib.load(dseg_file)
    bg = P.resample_like(P.mean_volume(background_img), dseg.shape[:3], dseg.affine, (), order=1)
    bg = P.ras(nib.Nifti1Image(bg.astype(np.float32), dseg.affine))[0]
    labels = P.ras(dseg)[0].astype(int)
    fg = labels > 0
    if fg.any():
        z = np.flatnonzero(fg.any(axis=(0, 1)))
        zs = [int(v) for v in np.linspace(z[0], z[-1], 6)]
        yc = int(np.argwhere(fg)[:, 1].mean())
    else:
        zs, yc = P.slice_indices(bg, 6), bg.shape[1] // 2
    vmin, vmax = P.window(bg)
    cmap = matplotlib.colormaps["tab20"].resampled(max(int(labels.max()), 1))
    fig, axes = plt.subplots(1, 2, figsize=(11, 2.6), gridspec_kw={"width_ratios": [6, 1.2]})
    tiles = [(P.mosaic(bg, zs), P.mosaic(labels.astype(float), zs)),
             (np.flipud(bg[:, yc, :].T), np.flipud(labels[:, yc, :].T).astype(float))]
    for ax, (b, lab) in zip(axes, tiles):
        ax.imshow(b, cmap="gray", vmin=vmin, vmax=vmax)
        ax.imshow(np.ma.masked_equal(lab, 0), cmap=cmap, vmin=0.5, vmax=max(int(labels.max()), 1) + 0.5,
                  alpha=0.55, interpolation="nearest")
        ax.set_axis_off()
    axes[0].set_title(title, fontsize=9, loc="left")
    axes[1].set_title("coronal", fontsize=8)
    fig.tight_layout()
    return P.save(fig, out_png)


def volume_bars(morph_tables: dict, out_svg) -> Path:
    """Horizontal bars of each lobule's volume (ml), one bar colour per table (e.g. BOLD, T1w)."""
    import matplotlib.pyplot as plt

    names = []
    for table in morph_tables.values():
        names += [n for n in table["name"] if n not in names]
    fig, ax = plt.subplots(figsize=(7, 0.22 * len(names) + 1.0))
    height = 0.8 / max(len(morph_tables), 1)
    for i, (label, table) in enumerate(morph_tables.items()):
        vol = dict(zip(table["name"], table["volume_mm3"] / 1000.0))
        ax.barh(np.arange(len(names)) + i * height, [vol.get(n, 0.0) for n in names], height=height, label=label)
    ax.set_yticks(np.arange(len(names)) + 0.4 - height / 2, names, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("volume (ml)", fontsize=8)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return P.save(fig, out_svg)
