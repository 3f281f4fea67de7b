"""BOLD reference and head-motion interfaces."""
import nibabel as nib
import numpy as np
from nipype.interfaces.base import File, TraitedSpec, traits

from .base import ThreadLimited, ThreadsInputSpec, save_img


class _BoldReferenceInputSpec(ThreadsInputSpec):
    bold_file = File(exists=True, mandatory=True)


class _BoldReferenceOutputSpec(TraitedSpec):
    ref_file = File(exists=True)
    mask_file = File(exists=True)
    fov_file = File(exists=True, desc="ones on the BOLD grid (field of view, for coverage QC)")


class BoldReference(ThreadLimited):
    """Median of motion-robust volumes and EPI brain mask (``registration.boldref``)."""

    input_spec = _BoldReferenceInputSpec
    output_spec = _BoldReferenceOutputSpec

    def _run_interface(self, runtime):
        from ..registration.boldref import bold_reference

        from ..nifti import load_series

        ref, mask, _ = bold_reference(load_series(self.inputs.bold_file))
        self._results["ref_file"] = save_img(ref, runtime.cwd, "boldref.nii.gz")
        self._results["mask_file"] = save_img(mask, runtime.cwd, "brain_mask.nii.gz")
        fov = nib.Nifti1Image(np.ones(ref.shape[:3], np.uint8), ref.affine)
        self._results["fov_file"] = save_img(fov, runtime.cwd, "fov.nii.gz")
        return runtime


class _HeadMotionInputSpec(ThreadsInputSpec):
    bold_file = File(exists=True, mandatory=True)
    ref_file = File(exists=True, mandatory=True)
    mask_file = File(exists=True)
    device = traits.Str("cpu", usedefault=True)
    sloppy = traits.Bool(False, usedefault=True)
    seed = traits.Int(0, usedefault=True, desc="random sampling of the cost (--random-seed)")
    use_gpu = traits.Bool(False, usedefault=True, desc="declares a GPU node to MultiProc")


class _HeadMotionOutputSpec(TraitedSpec):
    xfm_file = File(exists=True, desc="ITK file with one rigid pull matrix per volume")
    confounds_file = File(exists=True)


class HeadMotion(ThreadLimited):
    """Rigid head-motion estimates per volume (``registration.motion``)."""

    input_spec = _HeadMotionInputSpec
    output_spec = _HeadMotionOutputSpec

    def _run_interface(self, runtime):
        from pathlib import Path

        from ..registration.io import save_affine
        from ..registration.motion import confounds_table, estimate_head_motion

        mask = nib.load(self.inputs.mask_file) if self.inputs.mask_file else None
        from ..nifti import load_series

        result = estimate_head_motion(load_series(self.inputs.bold_file), nib.load(self.inputs.ref_file),
                                      mask=mask, device=self.inputs.device, sloppy=self.inputs.sloppy,
                                      seed=self.inputs.seed)
        xfm = save_affine(np.asarray(result["matrices"]), Path(runtime.cwd) / "hmc_xfm.txt")
        conf = Path(runtime.cwd) / "confounds.tsv"
        confounds_table(result).to_csv(conf, sep="\t", index=False, na_rep="n/a", float_format="%.6g")
        self._results["xfm_file"] = str(xfm)
        self._results["confounds_file"] = str(conf)
        return runtime
