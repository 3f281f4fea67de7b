"""Per-run workflow, composed along the data flow:

``fit`` (reference, motion, SR, coregistration) -> ``apply`` (resample once into each output
space) -> ``cerebellum`` (labels on the native SR grid) -> QC; ``outputs`` holds the
native-grid sinks."""
from __future__ import annotations

from nipype.interfaces import utility as niu
from nipype.pipeline import engine as pe

from ...interfaces.outputs import RunQC
from ..names import node_safe, run_name
from .apply import resample_into, t1w_space, template_space
from .cerebellum import run_cerebellum
from .fit import init_fit, t1w_input_fields
from .outputs import native_outputs


def init_bold_wf(config, run, spaces, device, has_t1w, name=None):
    """Workflow for one BOLD run.

    ``spaces``: ``spaces.ResolvedSpaces``. Inputs (``inputnode``) when ``has_t1w``: ``t1w_file``,
    ``t1w_mask``, and per normalisation target ``t1w_to_<key>_xfm`` (pull chain template -> T1w) and
    ``<key>_to_t1w_xfm`` (its inverse); ``registration_file`` (statistics of the diffeomorphic stage
    of the first template space, optional); ``checkpoint`` (SR model, optional); ``atlas_file``
    (cerebellar lobules on the anchor grid). Output: ``qc_file`` (the report figures are made from the
    outputs on disk after the workflow, ``bids_boldsr.reports``).
    """
    from ...bids import derivative_path

    ents, bold = run.entities, run.path
    wf = pe.Workflow(name=name or f"bold_{node_safe(run_name(ents))}_wf")
    inputnode = pe.Node(niu.IdentityInterface(["t1w_file", "t1w_mask", "registration_file", "checkpoint",
                                               "atlas_file"] + t1w_input_fields(spaces)), name="inputnode")
    outputnode = pe.Node(niu.IdentityInterface(["qc_file"]), name="outputnode")

    def dpath(suffix, ext=".nii.gz", **extra):
        return str(derivative_path(config.output_dir, ents, "func", suffix, ext, **extra))

    src_meta = {"RepetitionTime": run.repetition_time, "TaskName": run.task_name,
                "Sources": [f"bids:raw:{bold.relative_to(config.bids_dir)}"]}

    fit = init_fit(wf, config, run, spaces, device, has_t1w, inputnode)
    native_outputs(wf, spaces, fit, dpath, src_meta)
    dseg, dseg_out, cnn, atlas_dseg = run_cerebellum(wf, config, run, spaces.anchor, device, fit,
                                                     inputnode, dpath)

    out_spaces = [template_space(wf, s, fit) for s in spaces.templates]
    if has_t1w and spaces.anat:
        out_spaces.append(t1w_space(wf, fit, inputnode))
    qc = pe.Node(RunQC(bold_file=str(bold), spaces=[s.label for s in out_spaces],
                       info={"run": run_name(ents), "subject": ents["sub"], "sr_method": config.sr_method,
                             "repetition_time": run.repetition_time}),
                 name="qc", mem_gb=2.0)
    merges = {key: pe.Node(niu.Merge(max(len(out_spaces), 1)), name=f"{key}_per_space")
              for key in ("warped_masks", "space_masks", "fovs")}
    for i, space in enumerate(out_spaces, start=1):
        resample_into(wf, config, space, bold, fit, merges, i, dpath, src_meta, device=device)
    if out_spaces:
        wf.connect([(merges["warped_masks"], qc, [("out", "warped_mask_files")]),
                    (merges["space_masks"], qc, [("out", "template_mask_files")]),
                    (merges["fovs"], qc, [("out", "fov_files")])])

    wf.connect([(fit.sr, qc, [("out_file", "sr_file")]), (fit.boldref, qc, [("mask_file", "mask_file")]),
                (inputnode, qc, [("registration_file", "registration_file")]),
                (fit.hmc, qc, [("confounds_file", "confounds_file")]), (dseg, qc, [(dseg_out, "dseg_file")]),
                (qc, outputnode, [("qc_file", "qc_file")])])
    if cnn is not None:
        wf.connect([(cnn, qc, [("tissue_file", "tissue_file")]), (atlas_dseg, qc, [("out_file", "atlas_file")])])
    return wf
