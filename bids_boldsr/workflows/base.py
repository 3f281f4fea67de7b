"""Top-level and per-participant workflows."""
from __future__ import annotations

from nipype.interfaces import utility as niu
from nipype.pipeline import engine as pe

from ..interfaces.registration import RegisterLinear
from ..interfaces.reports import ParticipantReport
from ..interfaces.sr import TrainSR
from .bold import init_bold_wf, node_safe
from .outputs import sink, sink_transforms


def init_bids_boldsr_wf(config, subjects: dict, templates, anchor, device, config_files: dict):
    """One sub-workflow per participant. ``subjects`` maps a label to ``collect_data`` output."""
    # One cache per version: interfaces may change outputs between versions.
    version = config.version.replace(".", "_").replace("+", "_").replace("-", "_")
    wf = pe.Workflow(name=f"bids_boldsr_{version}_wf", base_dir=str(config.work_dir))
    for label, data in subjects.items():
        wf.add_nodes([init_single_subject_wf(config, label, data, templates, anchor, device,
                                             config_files[label])])
    return wf


def init_single_subject_wf(config, subject, data, templates, anchor, device, config_file):
    from ..boilerplate import methods_text
    from ..sr.apply import needs_training

    wf = pe.Workflow(name=f"sub_{node_safe(subject)}_wf")
    has_t1w = data["t1w"] is not None
    runs = data["bold"]
    qc_merge = pe.Node(niu.Merge(len(runs)), name="qc_files")
    fig_merge = pe.Node(niu.Merge(len(runs)), name="figure_lists")
    report = pe.Node(ParticipantReport(output_dir=str(config.output_dir), subject=subject,
                                       config_file=str(config_file),
                                       boilerplate=methods_text(config, has_t1w)),
                     name="report", run_without_submitting=True)
    wf.connect([(qc_merge, report, [("out", "qc_files")])])
    fig_merge.inputs.no_flatten = True  # one list of figures per run
    wf.connect(fig_merge, "out", report, "figures")

    atlas = _cerebellar_atlas(wf, config, anchor, device)
    if has_t1w:
        t1w_reg, forward, inverse, stats = _t1w_to_template(wf, config, subject, data["t1w"], anchor,
                                                            device)
        _t1w_cerebellum(wf, config, subject, data["t1w"], anchor, (forward, inverse), device, atlas)

    train = None
    if needs_training(config.sr_method):  # one model per participant, trained on all its runs
        train = pe.Node(TrainSR(bold_files=[str(r.path) for r in runs], method=config.sr_method,
                                factor=config.sr_factor if config.sr_voxel_size is None else None,
                                voxel_size=config.sr_voxel_size, device=device,
                                seed=config.random_seed, sloppy=config.sloppy,
                                use_gpu=device == "cuda"), name="sr_train", mem_gb=4.0)
    for i, run in enumerate(runs, start=1):
        bold_wf = init_bold_wf(config, run, templates, anchor, device, has_t1w)
        wf.connect(atlas[0], atlas[1], bold_wf, "inputnode.atlas_file")
        if train is not None:
            wf.connect(train, "checkpoint", bold_wf, "inputnode.checkpoint")
        if has_t1w:
            bold_wf.inputs.inputnode.t1w_file = str(data["t1w"])
            wf.connect([(t1w_reg, bold_wf, [("moving_mask_file", "inputnode.t1w_mask")]),
                        (forward[0], bold_wf, [(forward[1], "inputnode.t1w_to_template_xfm")]),
                        (inverse[0], bold_wf, [(inverse[1], "inputnode.template_to_t1w_xfm")])])
            if stats is not None:
                wf.connect(stats[0], stats[1], bold_wf, "inputnode.registration_file")
        wf.connect([(bold_wf, qc_merge, [("outputnode.qc_file", f"in{i}")]),
                    (bold_wf, fig_merge, [("outputnode.figures", f"in{i}")])])
    return wf


def _cerebellar_atlas(wf, config, anchor, device):
    """(node, field) giving the cerebellar lobules on the anchor template grid: the embedded AAL
    labels, or (``--cerebellar-atlas SUIT``) TemplateFlow's SUIT atlas brought onto the anchor by
    a cerebellum-masked affine + SVF registration of tpl-SUIT (``segmentation.suit``)."""
    if "suit" not in anchor:
        node = pe.Node(niu.IdentityInterface(["atlas_file"]), name="cerebellar_atlas")
        node.inputs.atlas_file = str(anchor["atlas"])
        return node, "atlas_file"
    from ..interfaces.segmentation import SuitToTemplate

    node = pe.Node(SuitToTemplate(suit_t1w=str(anchor["suit"]["t1w"]), suit_dseg=str(anchor["suit"]["dseg"]),
                                  template_file=str(anchor["t1w"]), template_atlas=str(anchor["atlas"]),
                                  device=device, sloppy=config.sloppy), name="suit_to_template", mem_gb=3.0)
    return node, "out_file"


def _t1w_to_template(wf, config, subject, t1w, anchor, device):
    """T1w -> anchor template: masked affine, then (unless ``--registration affine``) a
    diffeomorphic stage. Returns the affine node and (node, field) pairs for the forward
    chain (template -> T1w pull), the inverse chain and the registration statistics."""
    from ..bids import derivative_path
    from ..interfaces.registration import RegisterNonlinear

    space = anchor["space"]
    t1w_reg = pe.Node(RegisterLinear(moving_file=str(t1w), fixed_file=str(anchor["t1w"]),
                                     fixed_mask_file=str(anchor["mask"]), dof=12, cost="mi",
                                     skull_stripped_fixed=True, device=device, sloppy=config.sloppy),
                      name="t1w_to_template", mem_gb=3.0)
    ents, t1w_ents = {"sub": subject}, _anat_entities(t1w, subject)

    def xfm_path(src, dst, ext, **extra):
        return derivative_path(config.output_dir, ents, "anat", "xfm", ext,
                               **{"from": src, "to": dst, "mode": "image"}, **extra)

    sink(wf, t1w_reg, "moving_mask_file", derivative_path(
        config.output_dir, t1w_ents, "anat", "mask", ".nii.gz", desc="brain"),
        metadata={"Type": "Brain", "Method": "template brain mask pulled through the "
                  "T1w-to-template affine"}, name="ds_t1w_mask")
    if config.registration == "affine":
        sink_transforms(wf, t1w_reg, None, xfm_path, "T1w", space, "affine", "t1w")
        return t1w_reg, (t1w_reg, "xfm_file"), (t1w_reg, "inverse_xfm_file"), None

    nonlinear = pe.Node(RegisterNonlinear(moving_file=str(t1w), fixed_file=str(anchor["t1w"]),
                                          fixed_mask_file=str(anchor["mask"]),
                                          method=config.registration, device=device,
                                          sloppy=config.sloppy, use_gpu=device == "cuda"),
                        name="t1w_to_template_nonlinear", mem_gb=4.0)
    wf.connect([(t1w_reg, nonlinear, [("xfm_file", "affine_file"),
                                      ("moving_mask_file", "moving_mask_file")])])
    sink_transforms(wf, t1w_reg, nonlinear, xfm_path, "T1w", space, config.registration, "t1w")
    return (t1w_reg, (nonlinear, "xfm_files"), (nonlinear, "inverse_xfm_files"),
            (nonlinear, "stats_file"))


def _t1w_cerebellum(wf, config, subject, t1w, anchor, chains, device, atlas_src):
    """Cerebellar labels on the T1w grid: atlas through the inverse normalisation, kept (default)
    inside the cerebellum the CNN finds on the T1w; the lookup tables and per-label volumes."""
    from ..bids import derivative_path
    from ..interfaces.segmentation import LabelSummaries, ResampleLabels
    from .bold import cerebellum_metadata, learned_cerebellum, sink_static

    forward, inverse = chains
    atlas = pe.Node(ResampleLabels(ref_file=str(t1w)), name="t1w_cerebellum_dseg")
    wf.connect([(inverse[0], atlas, [(inverse[1], "xfm_files")]), (atlas_src[0], atlas, [(atlas_src[1], "in_file")])])
    dseg, dseg_out = atlas, "out_file"
    ents = _anat_entities(t1w, subject)

    def path(suffix, ext, desc="cerebellum"):
        return derivative_path(config.output_dir, ents, "anat", suffix, ext, desc=desc)

    if config.cerebellum == "cnn":
        cnn = learned_cerebellum(wf, "t1w_cerebellum_cnn", device, atlas, atlas_src, forward,
                                 lambda suffix, ext: path(suffix, ext, "cerebellumtissue"), mem_gb=3.0)
        cnn.inputs.in_file = str(t1w)
        dseg, dseg_out = cnn, "lobules_file"
    volumes = pe.Node(LabelSummaries(lut_file=str(anchor["atlas_tsv"])), name="t1w_cerebellum_volumes")
    wf.connect([(dseg, volumes, [(dseg_out, "dseg_file")])])
    sink(wf, dseg, dseg_out, path("dseg", ".nii.gz"),
         metadata=cerebellum_metadata(config.cerebellum, anchor, "the T1w"), name="ds_t1w_dseg")
    sink_static(wf, str(anchor["atlas_tsv"]), str(path("dseg", ".tsv")), "ds_t1w_dseg_tsv")
    sink(wf, volumes, "volumes_file", path("morph", ".tsv"), name="ds_t1w_cerebellum_volumes")


def _anat_entities(path, subject) -> dict:
    from ..bids import entities_of

    ents = entities_of(path)
    ents.setdefault("sub", subject)
    return {k: v for k, v in ents.items() if k in ("sub", "ses", "acq", "ce", "rec", "run")}

