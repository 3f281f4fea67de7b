"""Top-level and per-participant workflows: the anatomical stage, then one workflow per run."""
from __future__ import annotations

import logging

from nipype.interfaces import utility as niu
from nipype.pipeline import engine as pe

from ..interfaces.reports import ParticipantReport
from ..interfaces.sr import TrainSR
from .anat import t1w_cerebellum, t1w_to_templates
from .bold import init_bold_wf
from .bold.cerebellum import cerebellar_atlas
from .gpu import declare_gpu_nodes
from .names import node_safe

LOG = logging.getLogger("bids_boldsr")


def init_bids_boldsr_wf(config, subjects: dict, spaces, device, config_files: dict):
    """One sub-workflow per participant. ``subjects`` maps a label to ``collect_data`` output;
    ``spaces`` is ``spaces.ResolvedSpaces``."""
    # One cache per version: interfaces may change outputs between versions.
    version = config.version.replace(".", "_").replace("+", "_").replace("-", "_")
    wf = pe.Workflow(name=f"bids_boldsr_{version}_wf", base_dir=str(config.work_dir))
    for label, data in subjects.items():
        wf.add_nodes([init_single_subject_wf(config, label, data, spaces, device, config_files[label])])
    declare_gpu_nodes(wf)  # --n-gpu-procs bounds every node on the GPU
    return wf


def init_single_subject_wf(config, subject, data, spaces, device, config_file):
    from ..sr.apply import needs_training

    wf = pe.Workflow(name=f"sub_{node_safe(subject)}_wf")
    t1w, runs = data["t1w"], data["bold"]
    qc_merge = pe.Node(niu.Merge(len(runs)), name="qc_files")
    # the QC table; the page is built from the outputs on disk after the workflow (cli/run.py)
    report = pe.Node(ParticipantReport(output_dir=str(config.output_dir), subject=subject),
                     name="report", run_without_submitting=True)
    wf.connect([(qc_merge, report, [("out", "qc_files")])])

    if spaces.anat and t1w is None:
        LOG.warning("sub-%s has no T1w: the T1w output space is skipped for its runs", subject)
    atlas = cerebellar_atlas(wf, config, spaces.anchor, device)
    normalisations = {}
    if t1w is not None:
        normalisations = t1w_to_templates(wf, config, subject, t1w, spaces, device)
        t1w_cerebellum(wf, config, subject, t1w, spaces.anchor, normalisations[spaces.anchor.target.key],
                       device, atlas)

    train = None
    if needs_training(config.sr_method):  # one model per participant, trained on all its runs
        train = pe.Node(TrainSR(bold_files=[str(r.path) for r in runs], method=config.sr_method,
                                **config.sr_grid, device=device, seed=config.random_seed,
                                sloppy=config.sloppy, use_gpu=device == "cuda"), name="sr_train", mem_gb=4.0,
                        n_procs=config.omp_nthreads)
    # the warp statistics in QC: those of the first requested template (else the anchor)
    stats_key = (spaces.templates[0].target if spaces.templates else spaces.anchor.target).key
    for i, run in enumerate(runs, start=1):
        bold_wf = init_bold_wf(config, run, spaces, device, t1w is not None)
        wf.connect(atlas[0], atlas[1], bold_wf, "inputnode.atlas_file")
        if train is not None:
            wf.connect(train, "checkpoint", bold_wf, "inputnode.checkpoint")
        if t1w is not None:
            anchor = normalisations[spaces.anchor.target.key]
            bold_wf.inputs.inputnode.t1w_file = str(t1w)
            wf.connect(anchor.affine, "moving_mask_file", bold_wf, "inputnode.t1w_mask")
            for key, norm in normalisations.items():
                safe = node_safe(key)
                wf.connect([(norm.forward[0], bold_wf, [(norm.forward[1], f"inputnode.t1w_to_{safe}_xfm")]),
                            (norm.inverse[0], bold_wf, [(norm.inverse[1], f"inputnode.{safe}_to_t1w_xfm")])])
            stats = normalisations[stats_key].stats
            if stats is not None:
                wf.connect(stats[0], stats[1], bold_wf, "inputnode.registration_file")
        wf.connect([(bold_wf, qc_merge, [("outputnode.qc_file", f"in{i}")])])
    return wf
