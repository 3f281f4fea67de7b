"""Super-resolution interface; a GPU node (``use_gpu``) so MultiProc honours --n-gpu-procs."""
from nipype.interfaces.base import (BaseInterfaceInputSpec, File, InputMultiObject,
                                    SimpleInterface, TraitedSpec, traits)

from .base import save_json


class _SuperResolveInputSpec(BaseInterfaceInputSpec):
    bold_file = File(exists=True, mandatory=True)
    method = traits.Str("spline", usedefault=True)
    factor = traits.Either(None, traits.Float, usedefault=True)
    voxel_size = traits.Either(None, traits.Float, usedefault=True)
    checkpoint = traits.Either(None, File(exists=True), usedefault=True)
    device = traits.Str("cpu", usedefault=True)
    use_gpu = traits.Bool(False, usedefault=True, desc="declares a GPU node to MultiProc")


class _SuperResolveOutputSpec(TraitedSpec):
    out_file = File(exists=True)
    metadata_file = File(exists=True)


class SuperResolve(SimpleInterface):
    """Stream a BOLD run through a super-resolution method (``sr.apply.super_resolve_bold``)."""

    input_spec = _SuperResolveInputSpec
    output_spec = _SuperResolveOutputSpec

    def _run_interface(self, runtime):
        from pathlib import Path

        from ..sr.apply import super_resolve_bold

        out = Path(runtime.cwd) / "sr_bold.nii.gz"
        meta = super_resolve_bold(self.inputs.bold_file, out, method=self.inputs.method,
                                  factor=self.inputs.factor, voxel_size=self.inputs.voxel_size,
                                  checkpoint=self.inputs.checkpoint, device=self.inputs.device)
        self._results["out_file"] = str(out)
        self._results["metadata_file"] = save_json(meta, runtime.cwd, "sr_metadata.json")
        return runtime


class _TrainSRInputSpec(BaseInterfaceInputSpec):
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


class TrainSR(SimpleInterface):
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
