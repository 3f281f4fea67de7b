"""Label resampling: cerebellar atlas to native space, masks to templates (``segmentation.atlas``)."""
import nibabel as nib
from nipype.interfaces.base import (BaseInterfaceInputSpec, File, InputMultiObject,
                                    SimpleInterface, TraitedSpec)

from .base import save_img


class _ResampleLabelsInputSpec(BaseInterfaceInputSpec):
    in_file = File(exists=True, mandatory=True, desc="label or mask image")
    ref_file = File(exists=True, mandatory=True, desc="native grid (3-D or 4-D image)")
    xfm_files = InputMultiObject(File(exists=True), desc="pull chain, output grid first "
                                 "(ITK affines and displacement-field NIfTIs)")


class _ResampleLabelsOutputSpec(TraitedSpec):
    out_file = File(exists=True)


class ResampleLabels(SimpleInterface):
    """Nearest-neighbour resampling of labels/masks through a transform chain."""

    input_spec = _ResampleLabelsInputSpec
    output_spec = _ResampleLabelsOutputSpec

    def _run_interface(self, runtime):
        from ..registration.io import load_chain
        from ..segmentation.atlas import labels_to_grid

        ref = nib.load(self.inputs.ref_file)
        chain = load_chain(self.inputs.xfm_files)
        dseg = labels_to_grid(nib.load(self.inputs.in_file), ref.shape[:3], ref.affine, chain)
        self._results["out_file"] = save_img(dseg, runtime.cwd, "dseg.nii.gz")
        return runtime


class _LabelSummariesInputSpec(BaseInterfaceInputSpec):
    series_file = File(exists=True, desc="4-D series on the dseg grid (else volumes only)")
    dseg_file = File(exists=True, mandatory=True)
    lut_file = File(exists=True, mandatory=True)


class _LabelSummariesOutputSpec(TraitedSpec):
    timeseries_file = File(exists=True)
    volumes_file = File(exists=True)


class LabelSummaries(SimpleInterface):
    """Per-label mean time series and volumes (``segmentation.summaries``)."""

    input_spec = _LabelSummariesInputSpec
    output_spec = _LabelSummariesOutputSpec

    def _run_interface(self, runtime):
        from pathlib import Path

        from ..segmentation.summaries import label_timeseries, label_volumes, read_lut
        from ..sr.stream import load_series

        lut = read_lut(self.inputs.lut_file)
        dseg = nib.load(self.inputs.dseg_file)
        if self.inputs.series_file:
            ts = label_timeseries(load_series(self.inputs.series_file), dseg, lut)
            self._results["timeseries_file"] = str(Path(runtime.cwd) / "timeseries.tsv")
            ts.to_csv(self._results["timeseries_file"], sep="\t", index=False, float_format="%.6g")
        vols = label_volumes(dseg, lut)
        self._results["volumes_file"] = str(Path(runtime.cwd) / "volumes.tsv")
        vols.to_csv(self._results["volumes_file"], sep="\t", index=False)
        return runtime
