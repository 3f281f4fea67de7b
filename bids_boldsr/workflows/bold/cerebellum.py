"""Cerebellar labels: the atlas on the anchor template (AAL or SUIT), pulled through the inverse of
the normalisation onto an image and kept (``--cerebellum cnn``) inside the cerebellum the packaged
CNN finds there; lookup tables, volumes and per-label mean time series."""
from __future__ import annotations

from nipype.interfaces import utility as niu
from nipype.pipeline import engine as pe

from ...interfaces.segmentation import LabelSummaries, ResampleLabels, SegmentCerebellum
from ..sinks import sink, sink_static


def cerebellar_atlas(wf, config, anchor, device):
    """(node, field) giving the lobules on the anchor grid: the embedded AAL labels, or
    (``--cerebellar-atlas SUIT``) TemplateFlow's SUIT atlas brought onto the anchor by a
    cerebellum-masked affine + SVF registration (``segmentation.suit``)."""
    if anchor.suit is None:
        node = pe.Node(niu.IdentityInterface(["atlas_file"]), name="cerebellar_atlas")
        node.inputs.atlas_file = str(anchor.atlas)
        return node, "atlas_file"
    from ...interfaces.segmentation import SuitToTemplate

    node = pe.Node(SuitToTemplate(suit_t1w=str(anchor.suit["t1w"]), suit_dseg=str(anchor.suit["dseg"]),
                                  template_file=str(anchor.target.t1w), template_atlas=str(anchor.atlas),
                                  device=device, sloppy=config.sloppy, seed=config.random_seed),
                   name="suit_to_template", mem_gb=3.0)
    return node, "out_file"


def run_cerebellum(wf, config, run, anchor, device, fit, inputnode, dpath):
    """Labels on the native super-resolved grid of a run, with their sinks. Returns
    ``(dseg, field, cnn or None, atlas_dseg)``."""
    forward, inverse = fit.chains[anchor.target.key]
    atlas_dseg = pe.Node(ResampleLabels(), name="cerebellum_dseg")
    wf.connect([(fit.sr_ref, atlas_dseg, [("out_file", "ref_file")]),
                (inverse[0], atlas_dseg, [(inverse[1], "xfm_files")]),
                (inputnode, atlas_dseg, [("atlas_file", "in_file")])])
    dseg, dseg_out, cnn = atlas_dseg, "out_file", None
    if config.cerebellum == "cnn":
        cnn = learned_cerebellum(wf, "cerebellum_cnn", device, atlas_dseg, (inputnode, "atlas_file"),
                                 forward, lambda suffix, ext: dpath(suffix, ext, desc="cerebellumtissue"),
                                 n_procs=config.omp_nthreads)
        wf.connect(fit.sr_ref, "out_file", cnn, "in_file")
        dseg, dseg_out = cnn, "lobules_file"
    sink(wf, dseg, dseg_out, dpath("dseg", desc="cerebellum"),
         metadata=cerebellum_metadata(config.cerebellum, anchor, "the super-resolved BOLD reference"),
         name="ds_dseg")
    sink_static(wf, anchor.atlas_tsv, dpath("dseg", ".tsv", desc="cerebellum"), "ds_dseg_tsv")
    summaries = pe.Node(LabelSummaries(lut_file=str(anchor.atlas_tsv)), name="cerebellum_summaries",
                        mem_gb=1.0)
    wf.connect([(fit.sr, summaries, [("out_file", "series_file")]),
                (dseg, summaries, [(dseg_out, "dseg_file")])])
    sink(wf, summaries, "timeseries_file", dpath("timeseries", ".tsv", desc="cerebellum"),
         metadata={"Description": "mean super-resolved BOLD signal per cerebellar label (columns "
                   "named as in the dseg lookup table)", "RepetitionTime": run.repetition_time},
         name="ds_cerebellum_timeseries")
    sink(wf, summaries, "volumes_file", dpath("morph", ".tsv", desc="cerebellum"),
         name="ds_cerebellum_volumes")
    return dseg, dseg_out, cnn, atlas_dseg


def cerebellum_metadata(route, anchor, image) -> dict:
    """Sidecar of a cerebellar lobule dseg made by ``route`` (``--cerebellum``)."""
    meta = {"Atlas": anchor.atlas_name, "Template": anchor.target.name}
    if route == "cnn":
        meta["Method"] = (f"cerebellum segmented on {image} by the packaged 3-D U-Net; each of its voxels "
                          "takes the nearest atlas lobule pulled through the inverse of the normalisation")
    else:
        meta["Method"] = "atlas pulled through the inverse of the normalisation"
    return meta


def learned_cerebellum(wf, name, device, atlas, template_atlas, chain, path, mem_gb=2.0, n_procs=1):
    """The CNN node (its ``in_file`` still to connect or set) fed with the atlas on the image grid
    (``atlas``, a ResampleLabels node), the template atlas and the pull chain template -> image
    ((node, field) pairs: centre and prior), with the sinks of its tissue labels, their table and
    volumes (``path(suffix, ext)`` names them)."""
    cnn = pe.Node(SegmentCerebellum(device=device, use_gpu=device == "cuda"), name=name, mem_gb=mem_gb,
                  n_procs=n_procs)
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
