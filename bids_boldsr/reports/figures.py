"""Report figures (PNG) for one BOLD run."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import nibabel as nib  # noqa: E402
import numpy as np  # noqa: E402


def _mean_img(path) -> nib.Nifti1Image:
    from ..qc import streamed_mean_std
    from ..nifti import load_series

    img = load_series(path)
    if img.ndim == 3:
        return img
    mean, _ = streamed_mean_std(img)
    return nib.Nifti1Image(mean.astype(np.float32), img.affine)


def template_alignment(bold_file, template_file, template_mask_file, out_png, title) -> Path:
    """Mean template-space BOLD with the template brain outline on top (alignment check)."""
    from nilearn import plotting

    mean = _mean_img(bold_file)
    disp = plotting.plot_anat(mean, display_mode="mosaic", cut_coords=(4, 3, 3), title=title,
                              dim=-0.5, draw_cross=False, annotate=False)
    disp.add_contours(nib.load(template_mask_file), levels=[0.5], colors="r", linewidths=0.8)
    disp.savefig(str(out_png), dpi=80)
    disp.close()
    return Path(out_png)


def cerebellum_overlay(bold_file, dseg_file, out_png, title, tissue_file=None) -> Path:
    """Mean super-resolved BOLD with the cerebellar labels (native space): an orthogonal view at the
    labels' centre and a row of axial slices from the bottom to the top of the cerebellum, so a
    clipped inferior cerebellum or labels leaking into the occipital lobe show. With
    ``tissue_file`` the learned cerebellum's outline is drawn in white."""
    from nilearn import plotting

    mean = _mean_img(bold_file)
    dseg = nib.load(dseg_file)
    labels = np.asarray(dseg.dataobj)
    if (labels > 0).any():
        world = nib.affines.apply_affine(dseg.affine, np.argwhere(labels > 0))
        com, z = world.mean(0), np.percentile(world[:, 2], [5, 95])
    else:
        com, z = np.array([0.0, -55.0, -30.0]), np.array([-50.0, -10.0])
    fig = plt.figure(figsize=(11, 5.2))
    views = (("ortho", com, [0.0, 0.5, 1.0, 0.5]),
             ("z", list(np.linspace(z[0], z[1], 6)), [0.0, 0.0, 1.0, 0.5]))
    for i, (mode, cuts, rect) in enumerate(views):
        disp = plotting.plot_roi(dseg, bg_img=mean, display_mode=mode, cut_coords=cuts, figure=fig,
                                 axes=rect, title=title if i == 0 else None, alpha=0.45, cmap="tab20",
                                 dim=-0.3, draw_cross=False, annotate=i == 0)
        if tissue_file is not None:
            disp.add_contours(nib.load(tissue_file), levels=[0.5], colors="w", linewidths=0.7)
    fig.savefig(str(out_png), dpi=80)
    plt.close(fig)
    return Path(out_png)


def motion_plot(confounds_file, out_png, title) -> Path:
    import pandas as pd

    conf = pd.read_csv(confounds_file, sep="\t", na_values="n/a")
    fig, axes = plt.subplots(2, 1, figsize=(8, 3.2), sharex=True)
    for col in ("trans_x", "trans_y", "trans_z"):
        if col in conf:
            axes[0].plot(conf[col].to_numpy(), label=col, lw=0.8)
    axes[0].set_ylabel("mm")
    axes[0].legend(fontsize=6, ncol=3, loc="upper right")
    if "framewise_displacement" in conf:
        axes[1].plot(conf["framewise_displacement"].to_numpy(), color="k", lw=0.8)
    axes[1].set_ylabel("FD (mm)")
    axes[1].set_xlabel("volume")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(out_png, dpi=80)
    plt.close(fig)
    return Path(out_png)
