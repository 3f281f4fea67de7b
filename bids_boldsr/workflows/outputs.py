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
