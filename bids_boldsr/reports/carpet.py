"""Carpet plot (fMRIPrep layout: FD and DVARS above, voxel time series grouped by tissue below) and
the FD/DVARS plot of the Registration section."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from . import plotting as P

FD_THRESHOLD = 0.5  # mm (Power et al., 2012)
GROUP_COLORS = {"grey matter": "#2ca02c", "cerebellum": "#9467bd", "white matter": "#1f77b4",
                "CSF / other": "#d62728", "brain": "#7f7f7f"}


def dvars(img, mask) -> np.ndarray:
    """RMS over the mask of the volume-to-volume signal change, in % of the mean masked signal
    (first value NaN). Volumes are read one at a time."""
    mask = np.asarray(mask) > 0
    prev, out, total = None, [np.nan], 0.0
    for t in range(img.shape[3]):
        vol = np.asarray(img.dataobj[..., t], dtype=np.float64)[mask]
        total += vol.mean() if vol.size else 0.0
        if prev is not None:
            out.append(float(np.sqrt(np.mean((vol - prev) ** 2))) if vol.size else np.nan)
        prev = vol
    mean = total / max(img.shape[3], 1)
    return np.asarray(out) * (100.0 / mean if mean else 1.0)


def tissue_groups(bold_img, template_files: dict) -> dict[str, np.ndarray]:
    """Masks on the BOLD grid from a template's GM/WM probabilities, brain mask and cerebellar
    atlas (keys of ``template_files``: gm, wm, mask, cerebellum); CSF / other = brain minus the rest."""
    import nibabel as nib

    shape, affine = bold_img.shape[:3], bold_img.affine

    def on_grid(key, order):
        return P.resample_like(nib.load(template_files[key]), shape, affine, (), order=order)

    brain = on_grid("mask", 0) > 0
    gm, wm = on_grid("gm", 1), on_grid("wm", 1)
    cb = (on_grid("cerebellum", 0) > 0) & brain if template_files.get("cerebellum") else np.zeros(shape, bool)
    groups = {"grey matter": (gm > 0.5) & brain & ~cb, "cerebellum": cb,
              "white matter": (wm > 0.5) & brain & ~cb,
              "CSF / other": brain & (gm < 0.2) & (wm < 0.2) & ~cb}
    return {k: v for k, v in groups.items() if v.any()}


def _rows(img, groups, max_rows=1500, seed=0):
    rng = np.random.default_rng(seed)
    total = sum(int(m.sum()) for m in groups.values())
    picks = {}
    for name, m in groups.items():
        idx = np.flatnonzero(m.ravel())
        n = max(1, int(round(max_rows * idx.size / max(total, 1))))
        picks[name] = np.sort(rng.choice(idx, min(n, idx.size), replace=False))
    series = {name: np.empty((p.size, img.shape[3]), np.float32) for name, p in picks.items()}
    for t in range(img.shape[3]):
        vol = np.asarray(img.dataobj[..., t], dtype=np.float32).ravel()
        for name, p in picks.items():
            series[name][:, t] = vol[p]
    out = []
    for name, ts in series.items():  # linear detrend, then z-score each voxel
        x = np.arange(ts.shape[1], dtype=np.float32)
        coef = np.polyfit(x, ts.T, 1) if ts.shape[1] > 2 else np.zeros((2, ts.shape[0]))
        res = ts - (np.outer(coef[0], x) + coef[1][:, None])
        sd = res.std(axis=1, keepdims=True)
        out.append((name, np.divide(res, sd, out=np.zeros_like(res), where=sd > 0)))
    return out


def carpet_plot(bold_file, groups: dict, fd, dv, out_png, tr=None) -> Path:
    import matplotlib.pyplot as plt

    from ..nifti import load_series

    img = load_series(bold_file)
    rows = _rows(img, groups)
    fig = plt.figure(figsize=(10, 6.5))
    grid = fig.add_gridspec(3, 2, height_ratios=[1, 1, 5], width_ratios=[1, 40], hspace=0.08, wspace=0.01)
    x = np.arange(img.shape[3])
    ax_fd, ax_dv = fig.add_subplot(grid[0, 1]), fig.add_subplot(grid[1, 1])
    for ax, y, label, color in ((ax_fd, fd, "FD (mm)", "k"), (ax_dv, dv, "DVARS (%)", "tab:orange")):
        ax.plot(x, y, color=color, lw=0.9)
        ax.set_ylabel(label, fontsize=8)
        ax.set_xlim(-0.5, len(x) - 0.5)
        ax.tick_params(labelbottom=False, labelsize=7)
    ax_fd.axhline(FD_THRESHOLD, color="r", ls=":", lw=0.8)
    ax = fig.add_subplot(grid[2, 1])
    data = np.vstack([r for _, r in rows])
    ax.imshow(data, aspect="auto", cmap="gray", vmin=-2, vmax=2, interpolation="nearest")
    ax.set_yticks([])
    ax.set_xlabel(f"volume{f' (TR {tr:g} s)' if tr else ''}", fontsize=8)
    side = fig.add_subplot(grid[2, 0], sharey=ax)
    start = 0
    for name, r in rows:
        side.axhspan(start - 0.5, start + len(r) - 0.5, color=GROUP_COLORS.get(name, "gray"))
        side.text(-0.3, start + len(r) / 2, name, rotation=90, ha="right", va="center", fontsize=7)
        start += len(r)
    side.set_axis_off()
    return P.save(fig, out_png)


def motion_plot(confounds, dv, out_svg) -> Path:
    """Framewise displacement (with the 0.5 mm threshold) and DVARS as a vector figure."""
    import matplotlib.pyplot as plt

    fd = confounds["framewise_displacement"].to_numpy(dtype=float)
    fig, axes = plt.subplots(3, 1, figsize=(9, 4.2), sharex=True)
    for col in ("trans_x", "trans_y", "trans_z"):
        if col in confounds:
            axes[0].plot(confounds[col].to_numpy(dtype=float), lw=0.8, label=col)
    axes[0].set_ylabel("translation (mm)", fontsize=8)
    axes[0].legend(fontsize=6, ncol=3, loc="upper right")
    axes[1].plot(fd, color="k", lw=0.9)
    axes[1].axhline(FD_THRESHOLD, color="r", ls=":", lw=0.8)
    axes[1].set_ylabel("FD (mm)", fontsize=8)
    axes[2].plot(dv, color="tab:orange", lw=0.9)
    axes[2].set_ylabel("DVARS (%)", fontsize=8)
    axes[2].set_xlabel("volume", fontsize=8)
    fig.tight_layout()
    return P.save(fig, out_svg)
