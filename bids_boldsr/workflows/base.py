"""Top-level and per-participant workflows."""
from __future__ import annotations

from nipype.interfaces import utility as niu
from nipype.pipeline import engine as pe

from ..interfaces.registration import RegisterLinear
from ..interfaces.reports import ParticipantReport
from ..interfaces.sr import TrainSR
from .bold import init_bold_wf, node_safe
from .outputs import sink


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
    from ..bids import derivative_path
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

    if has_t1w:
        t1w_reg = pe.Node(RegisterLinear(moving_file=str(data["t1w"]), fixed_file=str(anchor["t1w"]),
                                         fixed_mask_file=str(anchor["mask"]), dof=12, cost="mi",
                                         skull_stripped_fixed=True,
                                         device=device, sloppy=config.sloppy),
                          name="t1w_to_template", mem_gb=3.0)
        ents = {"sub": subject}
        t1w_ents = _anat_entities(data["t1w"], subject)
        sink(wf, t1w_reg, "xfm_file", derivative_path(
            config.output_dir, ents, "anat", "xfm", ".txt",
            **{"from": "T1w", "to": anchor["space"], "mode": "image"}), name="ds_t1w_xfm")
        sink(wf, t1w_reg, "moving_mask_file", derivative_path(
            config.output_dir, t1w_ents, "anat", "mask", ".nii.gz", desc="brain"),
            metadata={"Type": "Brain", "Method": "template brain mask pulled through the "
                      "T1w-to-template affine"}, name="ds_t1w_mask")

    train = None
    if needs_training(config.sr_method):  # one model per participant, trained on all its runs
        train = pe.Node(TrainSR(bold_files=[str(r.path) for r in runs], method=config.sr_method,
                                factor=config.sr_factor if config.sr_voxel_size is None else None,
                                voxel_size=config.sr_voxel_size, device=device,
                                seed=config.random_seed, sloppy=config.sloppy,
                                use_gpu=device == "cuda"), name="sr_train", mem_gb=4.0)
    for i, run in enumerate(runs, start=1):
        bold_wf = init_bold_wf(config, run, templates, anchor, device, has_t1w)
        if train is not None:
            wf.connect(train, "checkpoint", bold_wf, "inputnode.checkpoint")
        if has_t1w:
            bold_wf.inputs.inputnode.t1w_file = str(data["t1w"])
            wf.connect([(t1w_reg, bold_wf, [("xfm_file", "inputnode.t1w_to_template_xfm"),
                                            ("moving_mask_file", "inputnode.t1w_mask")])])
        wf.connect([(bold_wf, qc_merge, [("outputnode.qc_file", f"in{i}")]),
                    (bold_wf, fig_merge, [("outputnode.figures", f"in{i}")])])
    return wf


def _anat_entities(path, subject) -> dict:
    from ..bids import entities_of

    ents = entities_of(path)
    ents.setdefault("sub", subject)
    return {k: v for k, v in ents.items() if k in ("sub", "ses", "acq", "ce", "rec", "run")}

