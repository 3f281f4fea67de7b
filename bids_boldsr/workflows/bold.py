"""Per-run workflow: reference -> motion -> coregistration -> SR -> resample once -> labels, QC."""
from __future__ import annotations

import re

from nipype.interfaces import utility as niu
from nipype.pipeline import engine as pe

from ..interfaces.bold import BoldReference, HeadMotion
from ..interfaces.outputs import RunQC
from ..interfaces.registration import RegisterLinear, ResampleSeries
from ..interfaces.reports import RunFigures
from ..interfaces.segmentation import LabelSummaries, ResampleLabels, SegmentCerebellum
from ..interfaces.sr import SuperResolve, SuperResolveReference
from .outputs import sink, sink_transforms


def run_name(entities: dict) -> str:
    """``sub-01_task-rest_run-1`` from a run's entities (report and QC key)."""
    from ..bids import derivative_name

    return derivative_name(entities, "", "").rstrip("_")


def node_safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]", "_", text)


def init_bold_wf(config, run, templates, anchor, device, has_t1w, name=None):
    """Workflow for one BOLD run.

    ``templates``: list of dicts (space, t1w, mask, res) for output template spaces;
    ``anchor``: the template the cerebellar atlas lives in (``t1w``, ``mask``, ``atlas``).
    Inputs (``inputnode``) when ``has_t1w``: ``t1w_file``, ``t1w_mask``, the pull chains
    ``t1w_to_template_xfm`` (template points -> T1w) and ``template_to_t1w_xfm`` (its inverse),
    ``registration_file`` (statistics of the diffeomorphic stage, optional); ``checkpoint`` (SR model,
    optional); ``atlas_file`` (cerebellar lobules on the anchor grid). Outputs: ``qc_file``, ``figures``.
    """
    from ..bids import derivative_path

    ents, out = run.entities, config.output_dir
    wf = pe.Workflow(name=name or f"bold_{node_safe(run_name(ents))}_wf")
    inputnode = pe.Node(niu.IdentityInterface(["t1w_file", "t1w_mask", "t1w_to_template_xfm",
                                               "template_to_t1w_xfm", "registration_file",
                                               "checkpoint", "atlas_file"]), name="inputnode")
    outputnode = pe.Node(niu.IdentityInterface(["qc_file", "figures"]), name="outputnode")

    def dpath(suffix, ext=".nii.gz", **extra):
        return str(derivative_path(out, ents, "func", suffix, ext, **extra))

    bold = run.path
    src_meta = {"RepetitionTime": run.repetition_time, "TaskName": run.task_name,
                "Sources": [f"bids:raw:{bold.relative_to(config.bids_dir)}"]}

    boldref = pe.Node(BoldReference(bold_file=str(bold)), name="boldref", mem_gb=1.0)
    hmc = pe.Node(HeadMotion(bold_file=str(bold), device=device, sloppy=config.sloppy),
                  name="hmc", mem_gb=2.0)
    sr = pe.Node(SuperResolve(bold_file=str(bold), method=config.sr_method,
                              factor=config.sr_factor if config.sr_voxel_size is None else None,
                              voxel_size=config.sr_voxel_size, device=device,
                              use_gpu=device == "cuda"), name="super_resolve", mem_gb=2.0)
    wf.connect([(boldref, hmc, [("ref_file", "ref_file"), ("mask_file", "mask_file")]),
                (inputnode, sr, [("checkpoint", "checkpoint")])])

    # BOLD reference -> T1w (rigid) or straight to the anchor template (affine).
    # on the super-resolved reference: sharper edges halve the coregistration error of an
    # interpolated one (bids-boldsr-bench register-sr)
    coreg = pe.Node(RegisterLinear(dof=6 if has_t1w else 12, cost="mi", device=device,
                                   sloppy=config.sloppy), name="coreg", mem_gb=2.0)
    sr_ref = pe.Node(SuperResolveReference(method=config.sr_method,
                                           factor=config.sr_factor if config.sr_voxel_size is None else None,
                                           voxel_size=config.sr_voxel_size, device=device),
                     name="sr_boldref", mem_gb=1.0)
    wf.connect([(boldref, sr_ref, [("ref_file", "bold_file")]), (inputnode, sr_ref, [("checkpoint", "checkpoint")]),
                (sr_ref, coreg, [("out_file", "moving_file")])])
    chain = pe.Node(niu.Merge(2), name="template_chain")  # template -> (T1w ->) boldref
    inverse = pe.Node(niu.Merge(2), name="inverse_chain")  # boldref -> (T1w ->) template
    if has_t1w:
        wf.connect([(inputnode, coreg, [("t1w_file", "fixed_file"), ("t1w_mask", "fixed_mask_file")]),
                    (inputnode, chain, [("t1w_to_template_xfm", "in1")]),
                    (coreg, chain, [("xfm_file", "in2")]),
                    (coreg, inverse, [("inverse_xfm_file", "in1")]),
                    (inputnode, inverse, [("template_to_t1w_xfm", "in2")])])
        target = "T1w"
    else:
        coreg.inputs.fixed_file = str(anchor["t1w"])
        coreg.inputs.fixed_mask_file = str(anchor["mask"])
        target = anchor["space"]
        # No diffeomorphic stage without a T1w: measured on ds-forrest, a warp of the EPI reference
        # stretched the clipped slab over the missing cerebellum (docs/benchmarks-registration.md).
        wf.connect([(coreg, chain, [("xfm_file", "in1")]), (coreg, inverse, [("inverse_xfm_file", "in1")])])

    # Cerebellar labels on the native super-resolved grid: the atlas pulled through the inverse,
    # kept (default) only inside the cerebellum the CNN finds on the super-resolved reference.
    atlas_dseg = pe.Node(ResampleLabels(), name="cerebellum_dseg")
    wf.connect([(sr_ref, atlas_dseg, [("out_file", "ref_file")]), (inverse, atlas_dseg, [("out", "xfm_files")]),
                (inputnode, atlas_dseg, [("atlas_file", "in_file")])])
    dseg, dseg_out = atlas_dseg, "out_file"
    cnn = None
    if config.cerebellum == "cnn":
        cnn = learned_cerebellum(wf, "cerebellum_cnn", device, atlas_dseg, (inputnode, "atlas_file"),
                                 (chain, "out"), lambda suffix, ext: dpath(suffix, ext, desc="cerebellumtissue"))
        wf.connect(sr_ref, "out_file", cnn, "in_file")
        dseg, dseg_out = cnn, "lobules_file"

    qc = pe.Node(RunQC(bold_file=str(bold), info={"run": run_name(ents), "subject": ents["sub"],
                                                  "sr_method": config.sr_method,
                                                  "repetition_time": run.repetition_time}),
                 name="qc", mem_gb=2.0)
    wf.connect([(sr, qc, [("out_file", "sr_file")]), (boldref, qc, [("mask_file", "mask_file")]),
                (inputnode, qc, [("registration_file", "registration_file")]),
                (hmc, qc, [("confounds_file", "confounds_file")]), (dseg, qc, [(dseg_out, "dseg_file")])])

    figs = pe.Node(RunFigures(run_name=run_name(ents)), name="figures", mem_gb=2.0)
    wf.connect([(sr, figs, [("out_file", "sr_file")]), (dseg, figs, [(dseg_out, "dseg_file")]),
                (hmc, figs, [("confounds_file", "confounds_file")]),
                (qc, outputnode, [("qc_file", "qc_file")]), (figs, outputnode, [("figures", "figures")])])

    # ------------------------------------------------------------------ outputs (derivatives)
    sink(wf, sr, "out_file", dpath("bold", desc="sr"), metadata=src_meta,
         metadata_from=(sr, "metadata_file"), name="ds_sr_bold")
    sink(wf, boldref, "ref_file", dpath("boldref"), name="ds_boldref")
    sink(wf, boldref, "mask_file", dpath("mask", desc="brain"), metadata={"Type": "Brain"},
         name="ds_mask")
    sink(wf, hmc, "confounds_file", dpath("timeseries", ".tsv", desc="confounds"), name="ds_confounds")
    sink(wf, hmc, "xfm_file", dpath("xfm", ".txt", desc="hmc", **{"from": "orig", "to": "boldref",
                                                                   "mode": "image"}), name="ds_hmc_xfm")
    def xfm_path(src, dst, ext, **extra):
        return dpath("xfm", ext, **{"from": src, "to": dst, "mode": "image"}, **extra)

    sink_transforms(wf, coreg, None, xfm_path, "boldref", target, "affine", "coreg")
    sink(wf, dseg, dseg_out, dpath("dseg", desc="cerebellum"),
         metadata=cerebellum_metadata(config.cerebellum, anchor, "the super-resolved BOLD reference"),
         name="ds_dseg")
    if cnn is not None:
        wf.connect([(cnn, qc, [("tissue_file", "tissue_file")]), (atlas_dseg, qc, [("out_file", "atlas_file")]),
                    (cnn, figs, [("tissue_file", "tissue_file")])])
    sink_static(wf, str(anchor["atlas_tsv"]), dpath("dseg", ".tsv", desc="cerebellum"), "ds_dseg_tsv")
    summaries = pe.Node(LabelSummaries(lut_file=str(anchor["atlas_tsv"])), name="cerebellum_summaries",
                        mem_gb=1.0)
    wf.connect([(sr, summaries, [("out_file", "series_file")]),
                (dseg, summaries, [(dseg_out, "dseg_file")])])
    sink(wf, summaries, "timeseries_file", dpath("timeseries", ".tsv", desc="cerebellum"),
         metadata={"Description": "mean super-resolved BOLD signal per cerebellar label (columns "
                   "named as in the dseg lookup table)", "RepetitionTime": run.repetition_time},
         name="ds_cerebellum_timeseries")
    sink(wf, summaries, "volumes_file", dpath("morph", ".tsv", desc="cerebellum"),
         name="ds_cerebellum_volumes")
    qc.inputs.spaces = [t["space_label"] for t in templates]

    merges = {key: pe.Node(niu.Merge(len(templates) or 1), name=f"{key}_per_space")
              for key in ("warped_masks", "template_masks", "fovs")}
    for i, tpl in enumerate(templates, start=1):
        _add_template_space(wf, config, tpl, i, bold, boldref, hmc, sr, chain, merges,
                            figs if i == 1 else None, dpath, src_meta)
    if templates:
        wf.connect([(merges["warped_masks"], qc, [("out", "warped_mask_files")]),
                    (merges["template_masks"], qc, [("out", "template_mask_files")]),
                    (merges["fovs"], qc, [("out", "fov_files")])])
    return wf


def _add_template_space(wf, config, tpl, i, bold, boldref, hmc, sr, chain, merges, figs, dpath,
                        src_meta):
    """Resample the SR series onto one template grid, with the QC masks and outputs."""
    from ..interfaces.registration import TemplateGrid

    key = node_safe(tpl["space_label"])
    grid = pe.Node(TemplateGrid(template_file=str(tpl["t1w"]), extra_files=[str(tpl["mask"])]),
                   name=f"grid_{key}", mem_gb=1.0)
    if tpl["res"] is None:  # template FOV at the super-resolved voxel size
        wf.connect(sr, "out_file", grid, "voxel_size_from")
    resample = pe.Node(ResampleSeries(bold_file=str(bold), order=1 if config.sloppy else 3),
                       name=f"to_{key}", mem_gb=3.0)
    mask = pe.Node(ResampleLabels(), name=f"mask_to_{key}")
    fov = pe.Node(ResampleLabels(), name=f"fov_to_{key}")
    pick = pe.Node(niu.Select(index=[0]), name=f"pick_mask_{key}")
    wf.connect([(sr, resample, [("out_file", "bold_file")]),
                (grid, resample, [("grid_file", "ref_file")]),
                (chain, resample, [("out", "xfm_files")]),
                (hmc, resample, [("xfm_file", "hmc_file")]),
                (boldref, mask, [("mask_file", "in_file")]),
                (grid, mask, [("grid_file", "ref_file")]),
                (chain, mask, [("out", "xfm_files")]),
                (grid, pick, [("extra_on_grid", "inlist")]),
                (boldref, fov, [("fov_file", "in_file")]),
                (grid, fov, [("grid_file", "ref_file")]),
                (chain, fov, [("out", "xfm_files")]),
                (mask, merges["warped_masks"], [("out_file", f"in{i}")]),
                (fov, merges["fovs"], [("out_file", f"in{i}")]),
                (pick, merges["template_masks"], [("out", f"in{i}")])])
    extra = {"space": tpl["space"], "res": tpl["res"]}
    res_meta = {"Resolution": (f"TemplateFlow res-{tpl['res']}" if tpl["res"] is not None
                               else "template field of view at the super-resolved voxel size")}
    sink(wf, resample, "out_file", dpath("bold", desc="sr", **extra), metadata={**src_meta, **res_meta},
         metadata_from=(sr, "metadata_file"), name=f"ds_bold_{key}")
    sink(wf, mask, "out_file", dpath("mask", desc="brain", **extra), metadata={"Type": "Brain"},
         name=f"ds_mask_{key}")
    if figs is not None:
        figs.inputs.template_name = tpl["space_label"]
        wf.connect([(resample, figs, [("out_file", "template_bold_file")]),
                    (pick, figs, [("out", "template_mask_file")])])


def cerebellum_metadata(route, anchor, image) -> dict:
    """Sidecar of a cerebellar lobule dseg made by ``route`` (``--cerebellum``)."""
    meta = {"Atlas": anchor.get("atlas_name", "AAL (cerebellar regions)"), "Template": anchor["space"]}
    if route == "cnn":
        meta["Method"] = (f"cerebellum segmented on {image} by the packaged 3-D U-Net; each of its voxels "
                          "takes the nearest atlas lobule pulled through the inverse of the normalisation")
    else:
        meta["Method"] = "atlas pulled through the inverse of the normalisation"
    return meta


def learned_cerebellum(wf, name, device, atlas, template_atlas, chain, path, mem_gb=2.0):
    """The CNN node (its ``in_file`` still to connect or set) fed with the atlas on the image grid
    (``atlas``, a ResampleLabels node), the template atlas and the pull chain template -> image
    ((node, field) pairs: centre and prior), with the sinks of its tissue labels, their table and
    volumes (``path(suffix, ext)`` names them)."""
    cnn = pe.Node(SegmentCerebellum(device=device, use_gpu=device == "cuda"), name=name, mem_gb=mem_gb)
    wf.connect([(atlas, cnn, [("out_file", "atlas_file")]),
                (template_atlas[0], cnn, [(template_atlas[1], "template_atlas")]),
                (chain[0], cnn, [(chain[1], "xfm_files")])])
    prefix = name[: -len("cerebellum_cnn")]  # "" for a run, "t1w_" for the T1w: unique node names
    volumes = pe.Node(LabelSummaries(), name=f"{prefix}cerebellum_tissue_volumes")
    wf.connect([(cnn, volumes, [("tissue_file", "dseg_file"), ("tissue_lut_file", "lut_file")])])
    sink(wf, cnn, "tissue_file", path("dseg", ".nii.gz"),
         metadata={"Method": "3-D U-Net trained on synthetic images from real label maps "
                             "(bids_boldsr/data/segmentation/cerebellum_unet.json)"},
         name=f"ds_{prefix}cerebellum_tissue")
    sink(wf, cnn, "tissue_lut_file", path("dseg", ".tsv"), name=f"ds_{prefix}cerebellum_tissue_tsv")
    sink(wf, volumes, "volumes_file", path("morph", ".tsv"), name=f"ds_{prefix}cerebellum_tissue_volumes")
    return cnn


def sink_static(wf, in_file, out_path, name):
    from ..interfaces.outputs import DerivativesSink

    wf.add_nodes([pe.Node(DerivativesSink(in_file=in_file, out_path=out_path), name=name,
                          run_without_submitting=True)])
