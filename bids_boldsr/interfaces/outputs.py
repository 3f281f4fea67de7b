"""QC metrics and the derivatives sink (atomic copy + JSON sidecar)."""
import json
from pathlib import Path

import nibabel as nib
from nipype.interfaces.base import (BaseInterfaceInputSpec, File, InputMultiObject,
                                    SimpleInterface, TraitedSpec, traits)

from .base import ThreadLimited, ThreadsInputSpec, save_json


class _RunQCInputSpec(ThreadsInputSpec):
    bold_file = File(exists=True, mandatory=True)
    sr_file = File(exists=True, mandatory=True)
    mask_file = File(exists=True, mandatory=True)
    confounds_file = File(exists=True)
    spaces = traits.List(traits.Str)
    warped_mask_files = InputMultiObject(File(exists=True), desc="BOLD mask on each template grid")
    template_mask_files = InputMultiObject(File(exists=True), desc="template mask on the same grids")
    fov_files = InputMultiObject(File(exists=True), desc="BOLD field of view on the same grids")
    dseg_file = File(exists=True)
    tissue_file = File(exists=True, desc="learned cerebellum (L/R cortex, white matter)")
    atlas_file = File(exists=True, desc="atlas cerebellum on the same grid (agreement check)")
    registration_file = File(exists=True, desc="JSON statistics of the T1w -> template registration")
    info = traits.Dict(desc="extra fields (entities, method)")


class _RunQCOutputSpec(TraitedSpec):
    qc_file = File(exists=True)


class RunQC(ThreadLimited):
    """Run-level QC metrics as JSON (``bids_boldsr.qc``)."""

    input_spec = _RunQCInputSpec
    output_spec = _RunQCOutputSpec

    def _run_interface(self, runtime):
        import numpy as np
        import pandas as pd

        from ..qc import mask_overlap, run_metrics
        from ..nifti import load_series

        conf = (pd.read_csv(self.inputs.confounds_file, sep="\t", na_values="n/a")
                if self.inputs.confounds_file else None)
        qc = dict(self.inputs.info or {})
        qc.update(run_metrics(load_series(self.inputs.bold_file), load_series(self.inputs.sr_file),
                              nib.load(self.inputs.mask_file), conf))
        for space, warped, tpl, fov in zip(self.inputs.spaces or [], self.inputs.warped_mask_files or [],
                                           self.inputs.template_mask_files or [],
                                           self.inputs.fov_files or []):
            qc.update(mask_overlap(nib.load(warped), nib.load(tpl), nib.load(fov), space))
        if self.inputs.registration_file:
            import json
            from pathlib import Path

            stats = json.loads(Path(self.inputs.registration_file).read_text())
            qc.update({f"template_warp_{k}": v for k, v in stats.items() if k != "method"})
        if self.inputs.dseg_file:
            labels = np.asarray(nib.load(self.inputs.dseg_file).dataobj)
            qc["cerebellum_labels_present"] = int(len(np.unique(labels[labels > 0])))
            qc["cerebellum_voxels"] = int((labels > 0).sum())
        if self.inputs.tissue_file:
            from ..qc import cerebellum_metrics

            qc.update(cerebellum_metrics(nib.load(self.inputs.tissue_file),
                                         nib.load(self.inputs.atlas_file) if self.inputs.atlas_file else None))
        self._results["qc_file"] = save_json(qc, runtime.cwd, "qc.json")
        return runtime


class _SinkInputSpec(BaseInterfaceInputSpec):
    in_file = File(exists=True, mandatory=True)
    out_path = traits.Str(mandatory=True)
    metadata = traits.Dict(desc="fields for the JSON sidecar")
    metadata_files = InputMultiObject(File(exists=True), desc="JSON files merged into the sidecar")
    sidecar = traits.Bool(False, usedefault=True)


class _SinkOutputSpec(TraitedSpec):
    out_file = traits.Str()


class DerivativesSink(SimpleInterface):
    """Copy a result into the derivatives tree atomically (plus its sidecar).

    Always runs (like niworkflows' DerivativesDataSink) so a deleted output folder is refilled
    from the cached work dir; unchanged files (same size and mtime) are not copied again.
    """

    input_spec = _SinkInputSpec
    output_spec = _SinkOutputSpec
    _always_run = True

    def _run_interface(self, runtime):
        from ..atomic import atomic_copy, atomic_write_text

        src, dst = Path(self.inputs.in_file), Path(self.inputs.out_path)
        st = src.stat()
        if not (dst.is_file() and dst.stat().st_size == st.st_size
                and int(dst.stat().st_mtime) == int(st.st_mtime)):
            atomic_copy(src, dst)
        if self.inputs.sidecar:
            meta = {}
            for f in self.inputs.metadata_files or []:
                meta.update(json.loads(Path(f).read_text()))
            meta.update(self.inputs.metadata or {})
            side = dst.with_name(dst.name.split(".")[0] + ".json")
            atomic_write_text(side, json.dumps(meta, indent=2, sort_keys=True) + "\n")
        self._results["out_file"] = str(dst)
        return runtime
