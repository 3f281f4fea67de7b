"""Wiring helpers for derivatives sinks."""
from __future__ import annotations

from nipype.pipeline import engine as pe

from ..interfaces.outputs import DerivativesSink


def sink(wf, node, field, out_path, metadata=None, metadata_from=None, name=None):
    """Copy ``node.field`` to ``out_path`` (with a JSON sidecar for images and metadata)."""
    ds = pe.Node(DerivativesSink(out_path=str(out_path), metadata=metadata or {},
                                 sidecar=bool(metadata or metadata_from)),
                 name=name, run_without_submitting=True)
    wf.connect(node, field, ds, "in_file")
    if metadata_from is not None:
        wf.connect(metadata_from[0], metadata_from[1], ds, "metadata_files")
    return ds


def sink_transforms(wf, affine, warp, xfm_path, src, dst, method, prefix):
    """Sinks of an affine (+ diffeomorphic) registration ``src`` -> ``dst``: without ``warp`` the
    affine as ``from-src_to-dst_xfm.txt``; with it the ITK composites both ways plus the pieces
    (``desc-affine`` text, ``desc-warp`` displacement-field NIfTIs). ``xfm_path(src, dst, ext,
    **entities)`` names the files; ``prefix`` keeps node names unique."""
    if warp is None:
        sink(wf, affine, "xfm_file", xfm_path(src, dst, ".txt"), name=f"ds_{prefix}_xfm")
        return
    meta = {"Method": f"affine (mutual information) then diffeomorphic {method.upper()} "
                      "(LNCC, scaling and squaring)"}
    sink(wf, affine, "xfm_file", xfm_path(src, dst, ".txt", desc="affine"), name=f"ds_{prefix}_affine")
    sink(wf, warp, "composite_file", xfm_path(src, dst, ".h5"), name=f"ds_{prefix}_xfm")
    sink(wf, warp, "inverse_composite_file", xfm_path(dst, src, ".h5"), name=f"ds_{prefix}_inv_xfm")
    sink(wf, warp, "warp_file", xfm_path(src, dst, ".nii.gz", desc="warp"), metadata=meta,
         name=f"ds_{prefix}_warp")
    sink(wf, warp, "inverse_warp_file", xfm_path(dst, src, ".nii.gz", desc="warp"), metadata=meta,
         name=f"ds_{prefix}_inv_warp")


def sink_static(wf, in_file, out_path, name):
    """Copy a file known when the graph is built (a lookup table)."""
    wf.add_nodes([pe.Node(DerivativesSink(in_file=str(in_file), out_path=str(out_path)), name=name,
                          run_without_submitting=True)])
