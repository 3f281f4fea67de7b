"""Apply stage of a run: the super-resolved series resampled once into each output space (head
motion, coregistration and, for templates, that template's own normalisation composed into one
interpolation), with the brain mask and field of view on the same grid for QC."""
from __future__ import annotations

from dataclasses import dataclass

from nipype.interfaces import utility as niu
from nipype.pipeline import engine as pe

from ...interfaces.registration import ResampleSeries, TemplateGrid
from ...interfaces.segmentation import ResampleLabels
from ..names import node_safe
from ..sinks import sink


@dataclass(frozen=True)
class Space:
    """What ``resample_into`` needs of one output space."""

    label: str  # space-<label> in file names, QC key suffix
    entities: dict  # space/cohort/res entities of the outputs
    grid: pe.Node  # TemplateGrid: grid_file, extra_on_grid[0] = the space's brain mask
    chain: tuple  # (node, field): pull chain space -> boldref
    metadata: dict


def template_space(wf, space, fit) -> Space:
    """A requested template: its own grid (``res-N``, else its field of view at the SR voxel size)."""
    ref = space.reference
    key = node_safe(ref.label)
    grid = pe.Node(TemplateGrid(template_file=str(space.t1w), extra_files=[str(space.mask)]),
                   name=f"grid_{key}", mem_gb=1.0)
    if ref.res is None:
        wf.connect(fit.sr, "out_file", grid, "voxel_size_from")
    resolution = (f"TemplateFlow res-{ref.res}" if ref.res is not None
                  else "template field of view at the super-resolved voxel size")
    meta = {"SpatialReference": f"TemplateFlow tpl-{ref.name}" + (f" cohort-{ref.cohort}" if ref.cohort else ""),
            "Resolution": resolution}
    return Space(ref.label, ref.entities, grid, fit.chains[space.target.key][0], meta)


def t1w_space(wf, fit, inputnode) -> Space:
    """The participant's T1w: its field of view at the super-resolved voxel size, its brain mask."""
    grid = pe.Node(TemplateGrid(), name="grid_T1w", mem_gb=1.0)
    wf.connect([(inputnode, grid, [("t1w_file", "template_file"), ("t1w_mask", "extra_files")]),
                (fit.sr, grid, [("out_file", "voxel_size_from")])])
    meta = {"SpatialReference": "the participant's T1w (see Sources)",
            "Resolution": "T1w field of view at the super-resolved voxel size"}
    return Space("T1w", {"space": "T1w"}, grid, fit.t1w_chain, meta)


def resample_into(wf, config, space, bold, fit, qc_merges, i, dpath, src_meta, device="cpu"):
    """Nodes and sinks that put the SR series, brain mask and field of view on ``space``'s grid;
    the warped mask, the space's own mask and the field of view go to the QC merges (``in<i>``).
    Returns the resampling node and the node picking the space's mask (for figures)."""
    key = node_safe(space.label)
    # every core (threads engine) or the GPU (torch engine): the node takes all of --nprocs
    resample = pe.Node(ResampleSeries(bold_file=str(bold), order=1 if config.sloppy else 3,
                                      device=device, num_threads=config.nprocs,
                                      use_gpu=device == "cuda"),
                       name=f"to_{key}", mem_gb=3.0, n_procs=config.nprocs)
    mask = pe.Node(ResampleLabels(), name=f"mask_to_{key}")
    fov = pe.Node(ResampleLabels(), name=f"fov_to_{key}")
    pick = pe.Node(niu.Select(index=[0]), name=f"pick_mask_{key}")
    chain = space.chain
    for node in (resample, mask, fov):
        wf.connect([(space.grid, node, [("grid_file", "ref_file")]), (chain[0], node, [(chain[1], "xfm_files")])])
    wf.connect([(fit.sr, resample, [("out_file", "bold_file")]),
                (fit.hmc, resample, [("xfm_file", "hmc_file")]),
                (fit.boldref, mask, [("mask_file", "in_file")]),
                (fit.boldref, fov, [("fov_file", "in_file")]),
                (space.grid, pick, [("extra_on_grid", "inlist")]),
                (mask, qc_merges["warped_masks"], [("out_file", f"in{i}")]),
                (fov, qc_merges["fovs"], [("out_file", f"in{i}")]),
                (pick, qc_merges["space_masks"], [("out", f"in{i}")])])
    sink(wf, resample, "out_file", dpath("bold", desc="sr", **space.entities),
         metadata={**src_meta, **space.metadata}, metadata_from=(fit.sr, "metadata_file"),
         name=f"ds_bold_{key}")
    sink(wf, mask, "out_file", dpath("mask", desc="brain", **space.entities),
         metadata={"Type": "Brain", **space.metadata}, name=f"ds_mask_{key}")
    return resample, pick
