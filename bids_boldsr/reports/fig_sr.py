"""Super-resolution figures: input vs SR flicker (with a zoomed inset), tSNR before/after, and the
data-consistency error ``|x - B f(x)|`` of the mean volume."""
from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np

from . import plotting as P

SETTINGS = (("SuperResolutionMethod", "method"), ("Variant", "variant"),
            ("SuperResolutionFactor", "factor"), ("VoxelSize", "target voxel size (mm)"),
            ("InputVoxelSize", "input voxel size (mm)"), ("OutputVoxelSize", "output voxel size (mm)"),
            ("InputShape", "input shape"), ("OutputShape", "output shape"),
            ("TrainingSteps", "training steps run"), ("SelectedStep", "selected step"),
            ("TrainingSeconds", "training time (s)"), ("Alpha", "TV weight (alpha)"),
            ("DataConsistencyIterations", "data-consistency iterations"), ("Device", "device"),
            ("Seed", "seed"), ("ModelHash", "model checkpoint SHA-256"),
            ("WeightsSHA256", "weights SHA-256"), ("TorchVersion", "torch"))


def sr_settings(sidecar: dict) -> list[tuple[str, str]]:
    """(label, value) rows of the SR provenance recorded in the sidecar (present keys only)."""
    rows = []
    for key, label in SETTINGS:
        val = sidecar.get(key)
        if val is None:
            continue
        rows.append((label, " x ".join(str(v) for v in val) if isinstance(val, list) else str(val)))
    return rows


def _on_sr_grid(data, lr_affine, sr_img, order):
    from ..registration.resample import resample

    return resample(np.asarray(data, dtype=np.float32), lr_affine, sr_img.shape[:3], sr_img.affine, order=order)


def _ras(data, affine):
    return P.ras(nib.Nifti1Image(np.asarray(data, dtype=np.float32), affine))[0]


def sr_flicker(input_file, sr_file, mask_file, figdir, prefix) -> dict:
    """Middle volume of the input, trilinearly interpolated onto the SR grid ("before"), and the same
    volume super-resolved ("after"): a mosaic pair and a 3x zoomed inset pair of the centre slice."""
    from ..nifti import load_series

    lr, sr = load_series(input_file), load_series(sr_file)
    t = lr.shape[3] // 2 if lr.ndim == 4 else 0
    lr_vol = np.asarray(lr.dataobj[..., t] if lr.ndim == 4 else lr.dataobj, dtype=np.float32)
    sr_vol = np.asarray(sr.dataobj[..., t] if sr.ndim == 4 else sr.dataobj, dtype=np.float32)
    before = _ras(_on_sr_grid(lr_vol, lr.affine, sr, order=1), sr.affine)
    after = _ras(sr_vol, sr.affine)
    mask = _ras(_on_sr_grid(np.asanyarray(nib.load(mask_file).dataobj), lr.affine, sr, order=0), sr.affine) > 0
    zs = P.slice_indices(after, 6, mask)
    vmin, vmax = P.window(after, mask)
    out = {"before": P.frame_png(P.mosaic(before, zs, 3), figdir / f"{prefix}_desc-srbefore_bold.png", vmin, vmax,
                                 label="input, interpolated to the SR grid"),
           "after": P.frame_png(P.mosaic(after, zs, 3), figdir / f"{prefix}_desc-srafter_bold.png", vmin, vmax,
                                label="super-resolved")}
    z = zs[len(zs) // 2]
    idx = np.argwhere(mask[:, :, z]) if mask[:, :, z].any() else np.argwhere(np.ones(mask.shape[:2]))
    cx, cy = idx.mean(0).astype(int)
    hx, hy = max(8, mask.shape[0] // 6), max(8, mask.shape[1] // 6)
    box = (slice(max(cx - hx, 0), cx + hx), slice(max(cy - hy, 0), cy + hy), slice(z, z + 1))

    def zoom(vol):
        return np.kron(np.flipud(vol[box][:, :, 0].T), np.ones((3, 3), dtype=np.float32))

    out["inset_before"] = P.frame_png(zoom(before), figdir / f"{prefix}_desc-srinsetbefore_bold.png", vmin, vmax,
                                      label="input (x3 zoom)")
    out["inset_after"] = P.frame_png(zoom(after), figdir / f"{prefix}_desc-srinsetafter_bold.png", vmin, vmax,
                                     label="SR (x3 zoom)")
    out["volume"] = int(t)
    return out


def _tsnr(img):
    from ..qc import streamed_mean_std

    mean, std = streamed_mean_std(img)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(std > 0, mean / std, 0.0), mean


def tsnr_maps(input_file, sr_file, mask_file, out_png) -> dict:
    """Voxelwise tSNR (temporal mean / std) of the input (shown on the SR grid, nearest neighbour so
    its voxels stay visible) and of the SR series, on one colour scale; medians inside the mask."""
    import matplotlib.pyplot as plt

    from ..nifti import load_series

    lr, sr = load_series(input_file), load_series(sr_file)
    t_lr, _ = _tsnr(lr)
    t_sr, _ = _tsnr(sr)
    lr_mask = np.asanyarray(nib.load(mask_file).dataobj) > 0
    before = _ras(_on_sr_grid(t_lr, lr.affine, sr, order=0), sr.affine)
    after = _ras(t_sr, sr.affine)
    mask = _ras(_on_sr_grid(lr_mask, lr.affine, sr, order=0), sr.affine) > 0
    zs = P.slice_indices(after, 4, mask)
    vmax = float(np.percentile(np.concatenate([before[mask], after[mask]]), 99)) if mask.any() else 1.0
    fig, axes = plt.subplots(2, 1, figsize=(9, 5.2))
    for ax, data, title in ((axes[0], before, "tSNR of the input"), (axes[1], after, "tSNR after super-resolution")):
        im = ax.imshow(P.mosaic(data, zs), cmap="viridis", vmin=0, vmax=vmax)
        ax.set_axis_off()
        ax.set_title(title, fontsize=9, loc="left")
    fig.colorbar(im, ax=list(axes), shrink=0.8, label="tSNR")
    P.save(fig, out_png)
    return {"file": Path(out_png), "median_input": float(np.median(t_lr[lr_mask])) if lr_mask.any() else float("nan"),
            "median_sr": float(np.median(after[mask])) if mask.any() else float("nan")}


def consistency_map(input_file, sr_file, mask_file, sidecar: dict, out_png) -> dict:
    """``|x - B y|`` of the temporal means (``x`` acquired, ``y`` super-resolved, ``B`` the
    acquisition model recorded in the sidecar; box averaging when none was recorded, as for the
    interpolation methods), in percent of the median brain intensity of ``x``, on the acquired grid."""
    import matplotlib.pyplot as plt

    from ..nifti import load_series
    from ..sr.tvsr.acquisition import AcquisitionModel

    lr, sr = load_series(input_file), load_series(sr_file)
    x = np.asarray(P.mean_volume(lr).dataobj, dtype=np.float32)
    y = np.asarray(P.mean_volume(sr).dataobj, dtype=np.float32)
    params = sidecar.get("AcquisitionModel")
    model = AcquisitionModel(**params) if params else AcquisitionModel(slice_axis=None, profile="box")
    err = np.abs(x - model.apply(y, x.shape))
    mask = np.asanyarray(nib.load(mask_file).dataobj) > 0
    ref = float(np.median(x[mask])) if mask.any() else float(np.median(x[x > 0]))
    pct = 100.0 * err / max(ref, 1e-6)
    shown, m = _ras(pct, lr.affine), _ras(mask, lr.affine) > 0
    zs = P.slice_indices(shown, 6, m)
    vmax = max(5.0, float(np.percentile(pct[mask], 99))) if mask.any() else 5.0
    fig, ax = plt.subplots(figsize=(8, 5))
    im = ax.imshow(P.mosaic(shown, zs, 3), cmap="inferno", vmin=0, vmax=vmax)
    ax.contour(P.mosaic(m.astype(float), zs, 3), levels=[0.5], colors="c", linewidths=0.6)
    ax.set_axis_off()
    fig.colorbar(im, ax=ax, shrink=0.9, label="|x - B y| (% of median brain signal)")
    P.save(fig, out_png)
    return {"file": Path(out_png), "model": "recorded acquisition model" if params else "box averaging (assumed)",
            "median_pct": float(np.median(pct[mask])) if mask.any() else float("nan"),
            "p95_pct": float(np.percentile(pct[mask], 95)) if mask.any() else float("nan")}
