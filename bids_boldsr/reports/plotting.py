"""Small drawing helpers shared by the report figures: RAS slices, mosaics, PNG/SVG output.

Images are brought to the closest RAS orientation and cut into axial slices (rows of the
mosaic), so every figure of a report shows the brain the same way: left on the left,
anterior up."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import nibabel as nib  # noqa: E402
import numpy as np  # noqa: E402

DPI = 80


def ras(img) -> tuple[np.ndarray, np.ndarray]:
    """3-D data and affine of ``img`` (first volume of a series) in the closest RAS orientation."""
    img = nib.as_closest_canonical(img)
    data = np.asanyarray(img.dataobj)
    if data.ndim > 3:
        data = data[..., 0]
    return np.asarray(data, dtype=np.float32), img.affine


def mean_volume(img) -> nib.Nifti1Image:
    """Temporal mean of a series (streamed), or the image itself when 3-D."""
    from ..qc import streamed_mean_std

    if img.ndim == 3:
        return img
    mean, _ = streamed_mean_std(img)
    return nib.Nifti1Image(mean.astype(np.float32), img.affine)


def slice_indices(data: np.ndarray, n: int, mask: np.ndarray | None = None) -> list[int]:
    """``n`` axial slices spread over the extent of ``mask`` (else of the non-zero data)."""
    ref = mask if mask is not None and mask.any() else np.abs(data) > 0
    z = np.flatnonzero(ref.any(axis=(0, 1)))
    lo, hi = (z[0], z[-1]) if z.size else (0, data.shape[2] - 1)
    return [int(round(v)) for v in np.linspace(lo + 0.1 * (hi - lo), hi - 0.1 * (hi - lo), n)]


def window(data: np.ndarray, mask: np.ndarray | None = None) -> tuple[float, float]:
    vals = data[mask] if mask is not None and mask.any() else data[data != 0]
    if vals.size == 0:
        return 0.0, 1.0
    lo, hi = np.percentile(vals, [1, 99.5])
    return float(lo), float(hi if hi > lo else lo + 1)


def mosaic(data: np.ndarray, zs, ncols: int | None = None) -> np.ndarray:
    """Axial slices ``zs`` of a RAS array tiled into one 2-D image (anterior up)."""
    ncols = ncols or len(zs)
    tiles = [np.flipud(data[:, :, z].T) for z in zs]
    rows = [np.hstack(tiles[i:i + ncols] + [np.zeros_like(tiles[0])] * (ncols - len(tiles[i:i + ncols])))
            for i in range(0, len(tiles), ncols)]
    return np.vstack(rows)


def draw(ax, tile, vmin, vmax, cmap="gray", contour=None, contour_color="r", title=None):
    ax.imshow(tile, cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
    if contour is not None and contour.any():
        ax.contour(contour.astype(float), levels=[0.5], colors=contour_color, linewidths=0.8)
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=9, loc="left")


def save(fig, path) -> Path:
    """Save and close a figure (format from the suffix: .png or .svg)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, facecolor="white")
    plt.close(fig)
    return path


def frame_png(tile, path, vmin, vmax, cmap="gray", contour=None, contour_color="r", label=None) -> Path:
    """One flicker frame: a mosaic at its natural size (both frames of a pair have equal size)."""
    h, w = tile.shape
    scale = max(1.0, 900 / max(w, 1))
    fig = plt.figure(figsize=(w * scale / DPI, h * scale / DPI))
    ax = fig.add_axes([0, 0, 1, 1])
    draw(ax, tile, vmin, vmax, cmap, contour, contour_color)
    if label:
        ax.text(0.005, 0.99, label, color="yellow", fontsize=11, va="top", transform=ax.transAxes)
    return save(fig, path)


def resample_like(img, ref_shape, ref_affine, transforms=(), order=1) -> np.ndarray:
    """``img`` (3-D) on a reference grid through a pull chain (``registration.resample``)."""
    from ..registration.resample import resample_compiled

    data = np.asanyarray(img.dataobj)
    if data.ndim > 3:
        data = data[..., 0]
    return resample_compiled(np.asarray(data, dtype=np.float32), img.affine, ref_shape, ref_affine,
                             list(transforms), order=order)
