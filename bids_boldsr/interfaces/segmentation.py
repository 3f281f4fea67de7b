"""Cerebellum: atlas labels and masks through transform chains (``segmentation.atlas``), the learned
segmentation with atlas lobules inside it (``segmentation.cnn``, ``.lobules``), per-label summaries."""
import nibabel as nib
from nipype.interfaces.base import File, InputMultiObject, TraitedSpec, traits

from .base import ThreadLimited, ThreadsInputSpec, save_img


class _ResampleLabelsInputSpec(ThreadsInputSpec):
    in_file = File(exists=True, mandatory=True, desc="label or mask image")
    ref_file = File(exists=True, mandatory=True, desc="native grid (3-D or 4-D image)")
    xfm_files = InputMultiObject(File(exists=True), desc="pull chain, output grid first "
                                 "(ITK affines and displacement-field NIfTIs)")


class _ResampleLabelsOutputSpec(TraitedSpec):
    out_file = File(exists=True)


class ResampleLabels(ThreadLimited):
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


class _LabelSummariesInputSpec(ThreadsInputSpec):
    series_file = File(exists=True, desc="4-D series on the dseg grid (else volumes only)")
    dseg_file = File(exists=True, mandatory=True)
    lut_file = File(exists=True, mandatory=True)


class _LabelSummariesOutputSpec(TraitedSpec):
    timeseries_file = File(exists=True)
    volumes_file = File(exists=True)


class LabelSummaries(ThreadLimited):
    """Per-label mean time series and volumes (``segmentation.summaries``)."""

    input_spec = _LabelSummariesInputSpec
    output_spec = _LabelSummariesOutputSpec

    def _run_interface(self, runtime):
        from pathlib import Path

        from ..segmentation.summaries import label_timeseries, label_volumes, read_lut
        from ..nifti import load_series

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


class _SegmentCerebellumInputSpec(ThreadsInputSpec):
    in_file = File(exists=True, mandatory=True, desc="image to segment (T1w, BOLD reference; 4-D: mean)")
    atlas_file = File(exists=True, desc="atlas lobules on the same grid (from ResampleLabels)")
    template_atlas = File(exists=True, desc="the atlas on its template grid (with xfm_files: priors)")
    xfm_files = InputMultiObject(File(exists=True), desc="pull chain template -> image")
    device = traits.Str("cpu", usedefault=True)
    use_gpu = traits.Bool(False, usedefault=True, desc="declares a GPU node to MultiProc")


class _SegmentCerebellumOutputSpec(TraitedSpec):
    tissue_file = File(exists=True, desc="left/right cerebellar cortex and white matter (labels.LABELS)")
    tissue_lut_file = File(exists=True, desc="dseg.tsv of tissue_file")
    lobules_file = File(desc="atlas lobules restricted to the learned cerebellum")


class SegmentCerebellum(ThreadLimited):
    """Learned cerebellum (``segmentation.cnn``), and the atlas lobules inside it
    (``segmentation.lobules``) when ``atlas_file`` is given."""

    input_spec = _SegmentCerebellumInputSpec
    output_spec = _SegmentCerebellumOutputSpec

    def _run_interface(self, runtime):
        from pathlib import Path

        import numpy as np

        from ..registration.io import load_chain
        from ..segmentation.cnn import atlas_prior, segment_cerebellum
        from ..segmentation.labels import dseg_tsv
        from ..segmentation.lobules import lobules_in_mask

        image = nib.load(self.inputs.in_file)
        centre = prior = None
        if self.inputs.atlas_file and self.inputs.template_atlas and self.inputs.xfm_files:
            centre, prior = atlas_prior(nib.load(self.inputs.template_atlas), nib.load(self.inputs.atlas_file),
                                        load_chain(self.inputs.xfm_files))
        tissue = segment_cerebellum(image, device=self.inputs.device, centre=centre, prior=prior)
        self._results["tissue_file"] = save_img(tissue, runtime.cwd, "tissue_dseg.nii.gz")
        lut = Path(runtime.cwd) / "tissue_dseg.tsv"
        lut.write_text(dseg_tsv())
        self._results["tissue_lut_file"] = str(lut)
        if self.inputs.atlas_file:
            atlas = nib.load(self.inputs.atlas_file)
            data = np.asarray(atlas.dataobj)
            lobules = lobules_in_mask(np.asarray(tissue.dataobj) > 0, data, atlas.header.get_zooms()[:3])
            self._results["lobules_file"] = save_img(nib.Nifti1Image(lobules, atlas.affine), runtime.cwd,
                                                     "lobules_dseg.nii.gz")
        return runtime


class _SuitToTemplateInputSpec(ThreadsInputSpec):
    suit_t1w = File(exists=True, mandatory=True, desc="TemplateFlow tpl-SUIT T1w")
    suit_dseg = File(exists=True, mandatory=True, desc="tpl-SUIT atlas-Diedrichsen2009 dseg")
    template_file = File(exists=True, mandatory=True, desc="anchor template T1w (output grid)")
    template_atlas = File(exists=True, mandatory=True, desc="cerebellar labels on the anchor (the mask)")
    device = traits.Str("cpu", usedefault=True)
    sloppy = traits.Bool(False, usedefault=True)
    seed = traits.Int(0, usedefault=True, desc="random initialisations (--random-seed)")
    use_gpu = traits.Bool(False, usedefault=True, desc="declares a GPU node to MultiProc")


class _SuitToTemplateOutputSpec(TraitedSpec):
    out_file = File(exists=True, desc="SUIT lobules on the anchor template grid")
    stats_file = File(exists=True)


class SuitToTemplate(ThreadLimited):
    """SUIT lobules onto the anchor template by a cerebellum-masked registration (``segmentation.suit``)."""

    input_spec = _SuitToTemplateInputSpec
    output_spec = _SuitToTemplateOutputSpec

    def _run_interface(self, runtime):
        from ..segmentation.suit import suit_on_template
        from .base import save_json

        labels, stats = suit_on_template(nib.load(self.inputs.suit_t1w), nib.load(self.inputs.suit_dseg),
                                         nib.load(self.inputs.template_file), nib.load(self.inputs.template_atlas),
                                         device=self.inputs.device, sloppy=self.inputs.sloppy,
                                         seed=self.inputs.seed)
        self._results["out_file"] = save_img(labels, runtime.cwd, "suit_on_template_dseg.nii.gz")
        self._results["stats_file"] = save_json(stats, runtime.cwd, "suit_registration.json")
        return runtime
