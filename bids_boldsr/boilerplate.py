"""Methods text for the report ("citation boilerplate"), written from the settings actually used."""
from __future__ import annotations

from . import __version__


def methods_text(config, has_t1w: bool) -> str:
    size = (f"an isotropic voxel size of {config.sr_voxel_size} mm" if config.sr_voxel_size
            else f"a factor of {config.sr_factor:g} along each axis (field of view preserved)")
    sr = {"spline": "cubic B-spline interpolation (scipy.ndimage, order 3)",
          "trilinear": "trilinear interpolation",
          "tvsr": "a self-supervised, total-variation-regularised residual 3-D CNN trained on the "
                  "participant's own low-resolution runs only (no high-resolution data), with an "
                  "explicit acquisition model (slice profile and in-plane voxel averaging)",
          "tvsr-prior": "a residual 3-D CNN (bids-boldsr's learned prior) trained only on synthetic "
                        "BOLD-like images made from real brain label maps, each blurred by a point-spread "
                        "function drawn from a family (voxel averaging or k-space truncation in-plane, box "
                        "or Gaussian slice profile) at random factors, applied to the run's temporal mean "
                        "once, each volume adding its spline-interpolated deviation from the mean",
          "tvsr-published": "the published self-supervised TV-regularised deep super-resolution "
                            "network (trilinear upsampling + 10-layer residual CNN)",
          }.get(config.sr_method, config.sr_method)
    nonlinear = {"svf": ", followed by a diffeomorphic stationary velocity field (scaling and squaring, "
                        "local normalised cross-correlation, smoothness and negative-Jacobian penalties, "
                        "coarse to fine)",
                 "nevf": ", followed by a diffeomorphic neural velocity field (SIREN network, scaling "
                         "and squaring, local normalised cross-correlation)"}.get(config.registration, "")
    reg = ("the super-resolved BOLD reference was registered to the T1w image (rigid, mutual "
           "information) and the "
           f"T1w to each template on its own (affine, mutual information, initialised by the whole "
           f"head matched to a head atlas built from label maps (Billot et al., 2023), then refined "
           f"with template-based brain masking{nonlinear})"
           if has_t1w else
           "the super-resolved BOLD reference was registered directly to each template (affine, mutual "
           "information)")
    spaces = ", ".join(config.output_spaces.strings())
    return (
        f"Data were processed with bids-boldsr {__version__} (pybids, Nipype, PyTorch, nibabel, "
        f"nilearn, TemplateFlow). For each BOLD run a reference volume was computed as the median "
        f"of the volumes least different from the run median, with an EPI brain mask (nilearn). "
        f"Head motion was estimated by rigid registration of every volume to the reference "
        f"(framewise displacement after Power et al., 2012). Each volume was super-resolved with "
        f"{sr} to {size}, streamed volume by volume. For spatial normalisation {reg}. Head motion, "
        f"coregistration and normalisation were composed and applied in a single interpolation "
        f"to the super-resolved series (output spaces: {spaces}). {_cerebellum(config, has_t1w)} The embedded template is the ICBM 2009a "
        f"nonlinear symmetric MNI152 template (Fonov et al., 2009, 2011)."
    )


def _cerebellum(config, has_t1w) -> str:
    atlas = ("the SUIT probabilistic-atlas lobules (Diedrichsen et al., 2009; TemplateFlow tpl-SUIT, brought "
             "onto the template by a cerebellum-masked affine and diffeomorphic registration)"
             if config.cerebellar_atlas == "SUIT" else
             "the AAL atlas (Tzourio-Mazoyer et al., 2002) cerebellar regions")
    text = f"Cerebellar lobules were labelled by pulling {atlas} into native space through the inverse of the normalisation."
    if config.cerebellum == "cnn":
        text += (" The cerebellum itself (left/right cortex and white matter) was segmented on the super-resolved "
                 f"BOLD reference{' and on the T1w' if has_t1w else ''} by a 3-D U-Net trained on images synthesised from real label maps "
                 "(SynthSeg-style; Billot et al., 2023), centred and bounded by the normalised atlas, and the "
                 "lobules were kept inside it.")
    return text
