"""Anatomical stage: the T1w registered to every template (its own image and mask), and the
cerebellar labels on the T1w grid."""
from __future__ import annotations

from dataclasses import dataclass

from nipype.pipeline import engine as pe

from .. import templates as tpl
from ..bids import derivative_path, entities_of
from ..interfaces.registration import RegisterLinear, RegisterNonlinear
from ..interfaces.segmentation import LabelSummaries, ResampleLabels
from .bold.cerebellum import cerebellum_metadata, learned_cerebellum
from .names import node_safe
from .sinks import sink, sink_static, sink_transforms


@dataclass(frozen=True)
class Normalisation:
    """(node, field) pairs of one registration to a template: ``forward`` pulls template points
    into the T1w (or BOLD reference), ``inverse`` the other way, ``stats`` the warp statistics
    (None for an affine alone), ``affine`` the linear node (its brain mask of the moving image)."""

    affine: pe.Node
    forward: tuple
    inverse: tuple
    stats: tuple | None


def t1w_to_templates(wf, config, subject, t1w, spaces, device) -> dict:
    """One masked affine (MI) + diffeomorphic registration of the T1w per template (``spaces.targets``:
    the requested ones and the embedded anchor), with the transforms of requested templates written
    both ways. Returns ``{target key: Normalisation}``."""
    requested = {s.target.key for s in spaces.templates}
    out = {}
    for target in spaces.targets:
        out[target.key] = _t1w_to_template(wf, config, subject, t1w, target, device, spaces.anchor.target,
                                           write=target.key in requested)
    anchor = out[spaces.anchor.target.key]
    sink(wf, anchor.affine, "moving_mask_file", derivative_path(
        config.output_dir, anat_entities(t1w, subject), "anat", "mask", ".nii.gz", desc="brain"),
        metadata={"Type": "Brain", "Method": f"{spaces.anchor.target.name} brain mask pulled through "
                  "the T1w-to-template affine"}, name="ds_t1w_mask")
    return out


def _t1w_to_template(wf, config, subject, t1w, target, device, anchor, write) -> Normalisation:
    key = node_safe(target.key)
    linear = pe.Node(RegisterLinear(moving_file=str(t1w), fixed_file=str(target.t1w),
                                    fixed_mask_file=str(target.mask), dof=12, cost="mi",
                                    skull_stripped_fixed=True, device=device, sloppy=config.sloppy,
                                    seed=config.random_seed),
                     name=f"t1w_to_{key}", mem_gb=3.0, n_procs=config.omp_nthreads)
    # first affine stage: the whole T1w to a whole-head atlas (a bright scalp cannot pull the
    # skull-stripped template over the head); the atlas is in the anchor (embedded) template's world
    linear.inputs.head_atlas_file = str(tpl.head_atlas_file())
    if target.key != anchor.key:
        linear.inputs.head_atlas_t1w_file, linear.inputs.head_atlas_mask_file = str(anchor.t1w), str(anchor.mask)
    ents = {"sub": subject}

    def xfm_path(src, dst, ext, **extra):
        return derivative_path(config.output_dir, ents, "anat", "xfm", ext, **target.entities,
                               **{"from": src, "to": dst, "mode": "image"}, **extra)

    if config.registration == "affine":
        if write:
            sink_transforms(wf, linear, None, xfm_path, "T1w", target.name, "affine", f"t1w_{key}")
        return Normalisation(linear, (linear, "xfm_file"), (linear, "inverse_xfm_file"), None)
    nonlinear = pe.Node(RegisterNonlinear(moving_file=str(t1w), fixed_file=str(target.t1w),
                                          fixed_mask_file=str(target.mask), method=config.registration,
                                          device=device, sloppy=config.sloppy, use_gpu=device == "cuda",
                                          finest_mm=config.svf_finest_mm or 0.0),
                        name=f"t1w_to_{key}_nonlinear", mem_gb=4.0, n_procs=config.omp_nthreads)
    wf.connect([(linear, nonlinear, [("xfm_file", "affine_file"), ("moving_mask_file", "moving_mask_file")])])
    if write:
        sink_transforms(wf, linear, nonlinear, xfm_path, "T1w", target.name, config.registration, f"t1w_{key}")
    return Normalisation(linear, (nonlinear, "xfm_files"), (nonlinear, "inverse_xfm_files"),
                         (nonlinear, "stats_file"))


def t1w_cerebellum(wf, config, subject, t1w, anchor, normalisation, device, atlas_src):
    """Cerebellar labels on the T1w grid: the atlas through the inverse of the anchor normalisation,
    kept (default) inside the cerebellum the CNN finds on the T1w; lookup tables and volumes."""
    atlas = pe.Node(ResampleLabels(ref_file=str(t1w)), name="t1w_cerebellum_dseg")
    inverse = normalisation.inverse
    wf.connect([(inverse[0], atlas, [(inverse[1], "xfm_files")]),
                (atlas_src[0], atlas, [(atlas_src[1], "in_file")])])
    dseg, dseg_out = atlas, "out_file"
    ents = anat_entities(t1w, subject)

    def path(suffix, ext, desc="cerebellum"):
        return derivative_path(config.output_dir, ents, "anat", suffix, ext, desc=desc)

    if config.cerebellum == "cnn":
        cnn = learned_cerebellum(wf, "t1w_cerebellum_cnn", device, atlas, atlas_src, normalisation.forward,
                                 lambda suffix, ext: path(suffix, ext, "cerebellumtissue"), mem_gb=3.0,
                                 n_procs=config.omp_nthreads)
        cnn.inputs.in_file = str(t1w)
        dseg, dseg_out = cnn, "lobules_file"
    volumes = pe.Node(LabelSummaries(lut_file=str(anchor.atlas_tsv)), name="t1w_cerebellum_volumes")
    wf.connect([(dseg, volumes, [(dseg_out, "dseg_file")])])
    sink(wf, dseg, dseg_out, path("dseg", ".nii.gz"),
         metadata=cerebellum_metadata(config.cerebellum, anchor, "the T1w"), name="ds_t1w_dseg")
    sink_static(wf, anchor.atlas_tsv, path("dseg", ".tsv"), "ds_t1w_dseg_tsv")
    sink(wf, volumes, "volumes_file", path("morph", ".tsv"), name="ds_t1w_cerebellum_volumes")


def anat_entities(path, subject) -> dict:
    ents = entities_of(path)
    ents.setdefault("sub", subject)
    return {k: v for k, v in ents.items() if k in ("sub", "ses", "acq", "ce", "rec", "run")}
