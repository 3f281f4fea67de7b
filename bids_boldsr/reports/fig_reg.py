"""Registration figures: before/after flickers of coregistration and normalisation with fixed
contours, template brain outline over the template-space BOLD, and the warp's Jacobian map."""
from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np

from . import plotting as P


def _ras_on(data, affine):
    return P.ras(nib.Nifti1Image(np.asarray(data, dtype=np.float32), affine))[0]


def flicker(moving_img, ref_img, ref_mask_img, before_chain, after_chain, figdir, stem, labels) -> dict:
    """``moving_img`` pulled onto ``ref_img``'s grid through ``before_chain`` and ``after_chain``
    (pull convention, ``registration.resample``), both drawn with the outline of ``ref_mask_img``
    (the fixed image's brain): a well registered "after" frame fits the outline, "before" need not."""
    shape, affine = ref_img.shape[:3], ref_img.affine
    frames = [_ras_on(P.resample_like(moving_img, shape, affine, chain, order=1), affine)
              for chain in (before_chain, after_chain)]
    mask = _ras_on(P.resample_like(ref_mask_img, shape, affine, (), order=0), affine) > 0
    zs = P.slice_indices(frames[1], 6, mask & (np.abs(frames[1]) > 0))  # slices the moving image covers
    edge = P.mosaic(mask.astype(np.float32), zs, 3)
    vmin, vmax = P.window(frames[1], mask)
    return {key: P.frame_png(P.mosaic(frame, zs, 3), figdir / f"{stem}{key}_bold.png", vmin, vmax,
                             contour=edge, label=label)
            for key, frame, label in zip(("before", "after"), frames, labels)}


def template_outline(bold_file, template_mask_file, out_png, title) -> Path:
    """Temporal mean of the template-space SR BOLD with the template brain outline (red)."""
    import matplotlib.pyplot as plt

    from ..nifti import load_series

    img = P.mean_volume(load_series(bold_file))
    data, affine = P.ras(img)
    mask = _ras_on(P.resample_like(nib.load(template_mask_file), img.shape[:3], img.affine, (), order=0),
                   img.affine) > 0
    zs = P.slice_indices(data, 8, mask)
    vmin, vmax = P.window(data, mask)
    fig, ax = plt.subplots(figsize=(10, 3.0))
    P.draw(ax, P.mosaic(data, zs, 4), vmin, vmax, contour=P.mosaic(mask.astype(float), zs, 4), title=title)
    fig.tight_layout()
    return P.save(fig, out_png)


def jacobian_map(warp_file, template_mask_file, out_png) -> dict:
    """log2 of the Jacobian determinant of the T1w -> template displacement field: 0 = volume kept,
    +1 = doubled, -1 = halved; a negative determinant (folding, shown in black) is a broken warp."""
    import matplotlib.pyplot as plt

    from ..nifti import voxel_sizes
    from ..registration.field import DisplacementField, jacobian_determinant

    field = DisplacementField.from_nifti(nib.load(warp_file))
    jac = jacobian_determinant(field.displacement, voxel_sizes(field.affine))
    mask_img = nib.load(template_mask_file)
    mask = P.resample_like(mask_img, jac.shape, field.affine, (), order=0) > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        logj = np.where(jac > 0, np.log2(np.maximum(jac, 1e-6)), np.nan)
    shown, m = _ras_on(logj, field.affine), _ras_on(mask, field.affine) > 0
    zs = P.slice_indices(np.nan_to_num(shown) + m, 6, m)
    import matplotlib

    cmap = matplotlib.colormaps["RdBu_r"].with_extremes(bad="black")
    fig, ax = plt.subplots(figsize=(8, 5))
    im = ax.imshow(P.mosaic(shown, zs, 3), cmap=cmap, vmin=-1, vmax=1)
    ax.contour(P.mosaic(m.astype(float), zs, 3), levels=[0.5], colors="k", linewidths=0.5)
    ax.set_axis_off()
    fig.colorbar(im, ax=ax, shrink=0.9, label="log2 Jacobian determinant")
    P.save(fig, out_png)
    inside = jac[mask] if mask.any() else jac.ravel()
    return {"file": Path(out_png), "min": float(inside.min()), "max": float(inside.max()),
            "negative_fraction": float((inside <= 0).mean())}
