"""Native-grid outputs of a run: the super-resolved series (when ``bold`` is an output space), the
reference and mask, confounds, and the head-motion and coregistration transforms."""
from __future__ import annotations

from ..sinks import sink, sink_transforms


def native_outputs(wf, spaces, fit, dpath, src_meta):
    if spaces.native:
        sink(wf, fit.sr, "out_file", dpath("bold", desc="sr"), metadata=src_meta,
             metadata_from=(fit.sr, "metadata_file"), name="ds_sr_bold")
    sink(wf, fit.boldref, "ref_file", dpath("boldref"), name="ds_boldref")
    sink(wf, fit.boldref, "mask_file", dpath("mask", desc="brain"), metadata={"Type": "Brain"},
         name="ds_mask")
    sink(wf, fit.hmc, "confounds_file", dpath("timeseries", ".tsv", desc="confounds"), name="ds_confounds")
    sink(wf, fit.hmc, "xfm_file", dpath("xfm", ".txt", desc="hmc", **{"from": "orig", "to": "boldref",
                                                                      "mode": "image"}), name="ds_hmc_xfm")
    for node, target, entities in fit.coregistrations:
        def xfm_path(src, dst, ext, **extra):
            return dpath("xfm", ext, **{"from": src, "to": dst, "mode": "image"}, **entities, **extra)

        sink_transforms(wf, node, None, xfm_path, "boldref", target, "affine", node.name)
