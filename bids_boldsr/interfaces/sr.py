"""Super-resolution interface; a GPU node (``use_gpu``) so MultiProc honours --n-gpu-procs."""
from pathlib import Path

from nipype.interfaces.base import File, InputMultiObject, TraitedSpec, traits

from .base import ThreadLimited, ThreadsInputSpec, save_json


class _SuperResolveInputSpec(ThreadsInputSpec):
    bold_file = File(exists=True, mandatory=True)
    method = traits.Str("spline", usedefault=True)
    factor = traits.Either(None, traits.Float, usedefault=True)
    voxel_size = traits.Either(None, traits.Float, usedefault=True)
    checkpoint = traits.Either(None, File(exists=True), usedefault=True)
    device = traits.Str("cpu", usedefault=True)
    precision = traits.Enum("auto", "float32", "bfloat16", usedefault=True, desc="the SR network's arithmetic")
    use_gpu = traits.Bool(False, usedefault=True, desc="declares a GPU node to MultiProc")


class _SuperResolveOutputSpec(TraitedSpec):
    out_file = File(exists=True)
    metadata_file = File(exists=True)


class SuperResolve(ThreadLimited):
    """Stream a BOLD run through a super-resolution method (``sr.apply.super_resolve_bold``)."""

    input_spec = _SuperResolveInputSpec
    output_spec = _SuperResolveOutputSpec

    def _run_interface(self, runtime):
        from pathlib import Path

        from ..sr.apply import super_resolve_bold

        out = Path(runtime.cwd) / "sr_bold.nii.gz"
        meta = super_resolve_bold(self.inputs.bold_file, out, method=self.inputs.method,
                                  factor=self.inputs.factor, voxel_size=self.inputs.voxel_size,
                                  checkpoint=self.inputs.checkpoint, device=self.inputs.device,
                                  precision=self.inputs.precision)
        self._results["out_file"] = str(out)
        self._results["metadata_file"] = save_json(meta, runtime.cwd, "sr_metadata.json")
        return runtime


class SuperResolveReference(ThreadLimited):
    """The same method on one 3-D volume (the BOLD reference, ``bold_file``), so that the
    coregistration sees the sharper image (``bids-boldsr-bench register-sr`` measures the gain)."""

    input_spec = _SuperResolveInputSpec
    output_spec = _SuperResolveOutputSpec

    def _run_interface(self, runtime):
        import nibabel as nib
        import numpy as np

        from ..sr.apply import volume_method
        from ..sr.grid import sr_target_grid

        img = nib.load(self.inputs.bold_file)
        spec = ({"voxel_size": self.inputs.voxel_size} if self.inputs.voxel_size
                else {"factor": self.inputs.factor or 2.0})
        shape, affine = sr_target_grid(img.shape[:3], img.affine, **spec)
        ref = np.asarray(img.dataobj, dtype=np.float32).reshape(img.shape[:3])
        run = volume_method(self.inputs.method, self.inputs.checkpoint, self.inputs.device, run_mean=ref,
                            precision=self.inputs.precision)
        vol = run(ref, img.affine, shape, affine)
        out = nib.Nifti1Image(np.asarray(vol, dtype=np.float32), affine)
        out.header.set_xyzt_units("mm")
        self._results["out_file"] = str(Path(runtime.cwd) / "sr_boldref.nii.gz")
        nib.save(out, self._results["out_file"])
        self._results["metadata_file"] = save_json({"SuperResolutionMethod": self.inputs.method},
                                                   runtime.cwd, "sr_metadata.json")
        return runtime


class _TrainSRInputSpec(ThreadsInputSpec):
    bold_files = InputMultiObject(File(exists=True), mandatory=True)
    method = traits.Str("tvsr", usedefault=True)
    factor = traits.Either(None, traits.Float, usedefault=True)
    voxel_size = traits.Either(None, traits.Float, usedefault=True)
    device = traits.Str("cpu", usedefault=True)
    seed = traits.Int(0, usedefault=True)
    sloppy = traits.Bool(False, usedefault=True)
    use_gpu = traits.Bool(False, usedefault=True, desc="declares a GPU node to MultiProc")


class _TrainSROutputSpec(TraitedSpec):
    checkpoint = traits.Either(None, File(exists=True))


class TrainSR(ThreadLimited):
    """Self-supervised training on all of a participant's runs (``sr.apply.train_sr_model``)."""

    input_spec = _TrainSRInputSpec
    output_spec = _TrainSROutputSpec

    def _run_interface(self, runtime):
        from ..sr.apply import train_sr_model

        ckpt = train_sr_model(self.inputs.bold_files, self.inputs.method, factor=self.inputs.factor,
                              voxel_size=self.inputs.voxel_size, device=self.inputs.device,
                              seed=self.inputs.seed, sloppy=self.inputs.sloppy, out_dir=runtime.cwd)
        self._results["checkpoint"] = None if ckpt is None else str(ckpt)
        return runtime
