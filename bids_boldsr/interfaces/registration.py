"""Registration and resampling interfaces (thin wrappers over ``bids_boldsr.registration``)."""
import nibabel as nib
import numpy as np
from nipype.interfaces.base import File, InputMultiObject, TraitedSpec, traits

from .base import ThreadLimited, ThreadsInputSpec, save_img
from ..registration.apply import ENGINES


class _RegisterInputSpec(ThreadsInputSpec):
    moving_file = File(exists=True, mandatory=True)
    fixed_file = File(exists=True, mandatory=True)
    fixed_mask_file = File(exists=True)
    moving_mask_file = File(exists=True)
    dof = traits.Enum(6, 9, 12, usedefault=True)
    cost = traits.Enum("mi", "ncc", usedefault=True)
    device = traits.Str("cpu", usedefault=True)
    sloppy = traits.Bool(False, usedefault=True)
    seed = traits.Int(0, usedefault=True, desc="random initialisations (--random-seed)")
    n_starts = traits.Int(1, usedefault=True, desc="multi-start: starting positions per alignment "
                          "(registration.linear.register_linear); 1 = single start")
    use_gpu = traits.Bool(False, usedefault=True, desc="declares a GPU node to MultiProc")
    skull_stripped_fixed = traits.Bool(False, usedefault=True, desc="moving has a skull, fixed is "
                                       "a skull-stripped template: two-stage brain-masked affine")
    head_atlas_file = File(exists=True, desc="whole-head atlas of tissue classes for the first stage "
                           "of a skull-stripped-fixed affine (templates.head_atlas_file)")
    head_atlas_t1w_file = File(exists=True, desc="T1w of the template the head atlas lives in, when "
                               "it is not the fixed template (the atlas is then moved by a brain affine)")
    head_atlas_mask_file = File(exists=True, desc="brain mask of head_atlas_t1w_file")


class _RegisterOutputSpec(TraitedSpec):
    xfm_file = File(exists=True, desc="ITK affine: fixed points -> moving points")
    inverse_xfm_file = File(exists=True, desc="ITK affine: moving points -> fixed points")
    moving_mask_file = File(desc="fixed mask pulled back into the moving image (brain mask)")


class RegisterLinear(ThreadLimited):
    """Rigid/affine registration (``registration.linear.register_linear``)."""

    input_spec = _RegisterInputSpec
    output_spec = _RegisterOutputSpec

    def _run_interface(self, runtime):
        from pathlib import Path

        from ..registration.io import save_affine
        from ..registration.linear import (brain_mask_from_template, register_linear,
                                           register_to_template)

        moving, fixed = nib.load(self.inputs.moving_file), nib.load(self.inputs.fixed_file)
        fixed_mask = nib.load(self.inputs.fixed_mask_file) if self.inputs.fixed_mask_file else None
        moving_mask = nib.load(self.inputs.moving_mask_file) if self.inputs.moving_mask_file else None
        if self.inputs.skull_stripped_fixed and fixed_mask is not None:
            matrix = register_to_template(moving, fixed, fixed_mask, dof=self.inputs.dof,
                                          device=self.inputs.device, sloppy=self.inputs.sloppy,
                                          seed=self.inputs.seed, head_atlas=self._head_atlas(fixed, fixed_mask))
        else:
            matrix = register_linear(moving, fixed, dof=self.inputs.dof, cost=self.inputs.cost,
                                     fixed_mask=fixed_mask, moving_mask=moving_mask,
                                     device=self.inputs.device, sloppy=self.inputs.sloppy,
                                     seed=self.inputs.seed, n_starts=self.inputs.n_starts)
        self._results["xfm_file"] = str(save_affine(matrix, Path(runtime.cwd) / "xfm.txt"))
        self._results["inverse_xfm_file"] = str(save_affine(np.linalg.inv(matrix),
                                                            Path(runtime.cwd) / "inverse_xfm.txt"))
        if fixed_mask is not None:
            mask = brain_mask_from_template(moving, fixed_mask, matrix)
            self._results["moving_mask_file"] = save_img(mask, runtime.cwd, "moving_mask.nii.gz")
        return runtime

    def _head_atlas(self, fixed, fixed_mask):
        from ..registration.linear import head_atlas_in

        if not self.inputs.head_atlas_file:
            return None
        atlas = nib.load(self.inputs.head_atlas_file)
        if not self.inputs.head_atlas_t1w_file:
            return atlas
        return head_atlas_in(atlas, fixed, fixed_mask, nib.load(self.inputs.head_atlas_t1w_file),
                             nib.load(self.inputs.head_atlas_mask_file), self.inputs.device, self.inputs.seed)


class _NonlinearInputSpec(ThreadsInputSpec):
    moving_file = File(exists=True, mandatory=True)
    fixed_file = File(exists=True, mandatory=True)
    fixed_mask_file = File(exists=True, mandatory=True, desc="sets the working grid")
    moving_mask_file = File(exists=True, desc="brain mask of the moving image (skull removed)")
    affine_file = File(exists=True, mandatory=True, desc="initial ITK affine, fixed -> moving")
    method = traits.Enum("svf", "nevf", usedefault=True)
    device = traits.Str("cpu", usedefault=True)
    sloppy = traits.Bool(False, usedefault=True)
    use_gpu = traits.Bool(False, usedefault=True, desc="declares a GPU node to MultiProc")
    seed = traits.Int(0, usedefault=True, desc="network initialisation of nevf (--random-seed)")
    finest_mm = traits.Float(0.0, usedefault=True, desc="finest SVF level in mm (0: finest_spacing)")


class _NonlinearOutputSpec(TraitedSpec):
    xfm_files = traits.List(File(exists=True), desc="pull chain fixed -> moving: [warp, affine]")
    inverse_xfm_files = traits.List(File(exists=True), desc="pull chain moving -> fixed: "
                                    "[inverse affine, inverse warp]")
    warp_file = File(exists=True, desc="displacement field (ITK NIfTI), fixed space")
    inverse_warp_file = File(exists=True, desc="inverse displacement field (ITK NIfTI)")
    composite_file = File(exists=True, desc="ITK composite .h5 of xfm_files")
    inverse_composite_file = File(exists=True, desc="ITK composite .h5 of inverse_xfm_files")
    stats_file = File(exists=True, desc="JSON: Jacobian determinant and similarity before/after")


class RegisterNonlinear(ThreadLimited):
    """Diffeomorphic registration after an affine (``registration.svf.register_diffeomorphic``)."""

    input_spec = _NonlinearInputSpec
    output_spec = _NonlinearOutputSpec

    def _run_interface(self, runtime):
        from pathlib import Path

        from ..registration.io import load_affine, save_affine, save_composite_h5, save_field
        from ..registration.svf import finest_spacing, register_diffeomorphic
        from .base import save_json

        cwd = Path(runtime.cwd)
        moving_mask = nib.load(self.inputs.moving_mask_file) if self.inputs.moving_mask_file else None
        moving, fixed = nib.load(self.inputs.moving_file), nib.load(self.inputs.fixed_file)
        result = register_diffeomorphic(
            moving, fixed, load_affine(self.inputs.affine_file), method=self.inputs.method,
            fixed_mask=nib.load(self.inputs.fixed_mask_file), moving_mask=moving_mask,
            device=self.inputs.device, sloppy=self.inputs.sloppy, seed=self.inputs.seed,
            spacing=None if self.inputs.sloppy else (
                self.inputs.finest_mm or finest_spacing(moving, fixed, self.inputs.device)))
        warp, inv_warp = save_field(result.field, cwd / "warp.nii.gz"), save_field(
            result.inverse_field, cwd / "inverse_warp.nii.gz")
        affine = save_affine(result.affine, cwd / "affine.txt")
        inv_affine = save_affine(np.linalg.inv(result.affine), cwd / "inverse_affine.txt")
        self._results["warp_file"], self._results["inverse_warp_file"] = str(warp), str(inv_warp)
        self._results["xfm_files"] = [str(warp), str(affine)]
        self._results["inverse_xfm_files"] = [str(inv_affine), str(inv_warp)]
        self._results["composite_file"] = str(save_composite_h5(result.chain, cwd / "xfm.h5"))
        self._results["inverse_composite_file"] = str(save_composite_h5(result.inverse_chain,
                                                                        cwd / "inverse_xfm.h5"))
        self._results["stats_file"] = save_json(result.stats, cwd, "registration.json")
        return runtime


class _TemplateGridInputSpec(ThreadsInputSpec):
    template_file = File(exists=True, mandatory=True)
    voxel_size_from = File(exists=True, desc="image whose voxel size sets the grid (else template's)")
    extra_files = InputMultiObject(File(exists=True), desc="template-space images put on the grid "
                                   "(masks/labels: nearest neighbour)")


class _TemplateGridOutputSpec(TraitedSpec):
    grid_file = File(exists=True, desc="the template image on the output grid")
    extra_on_grid = traits.List(File(exists=True))


class TemplateGrid(ThreadLimited):
    """The output grid in template space: the template's FOV at the SR voxel size (or ``res-N``)."""

    input_spec = _TemplateGridInputSpec
    output_spec = _TemplateGridOutputSpec

    def _run_interface(self, runtime):
        from ..registration.resample import resample
        from ..segmentation.atlas import labels_to_grid
        from ..nifti import voxel_sizes
        from ..sr.grid import sr_target_grid

        tpl = nib.load(self.inputs.template_file)
        shape, affine = tpl.shape[:3], tpl.affine
        if self.inputs.voxel_size_from:
            zooms = voxel_sizes(nib.load(self.inputs.voxel_size_from).affine)
            shape, affine = sr_target_grid(shape, affine, voxel_size=zooms)
        data = resample(np.asarray(tpl.dataobj, dtype=np.float32), tpl.affine, shape, affine, order=1)
        self._results["grid_file"] = save_img(nib.Nifti1Image(data, affine), runtime.cwd, "grid.nii.gz")
        outs = []
        for i, f in enumerate(self.inputs.extra_files or []):
            outs.append(save_img(labels_to_grid(nib.load(f), shape, affine), runtime.cwd,
                                 f"extra{i}.nii.gz"))
        self._results["extra_on_grid"] = outs
        return runtime


class _ResampleSeriesInputSpec(ThreadsInputSpec):
    bold_file = File(exists=True, mandatory=True)
    ref_file = File(exists=True, mandatory=True, desc="defines the output grid")
    xfm_files = InputMultiObject(File(exists=True), desc="pull chain, output space first")
    hmc_file = File(exists=True, desc="per-volume head-motion pull matrices (ITK)")
    order = traits.Int(3, usedefault=True)
    engine = traits.Enum(*ENGINES, usedefault=True,
                         desc="registration.apply engine (auto: torch on CUDA, else numba)")
    device = traits.Str("cpu", usedefault=True)
    num_threads = traits.Int(0, usedefault=True, desc="threads (0: every usable CPU)")
    use_gpu = traits.Bool(False, usedefault=True, desc="declares a GPU node to MultiProc")


class _ResampleSeriesOutputSpec(TraitedSpec):
    out_file = File(exists=True)


class ResampleSeries(ThreadLimited):
    """Motion + coregistration + normalisation in one interpolation (``registration.apply``)."""

    input_spec = _ResampleSeriesInputSpec
    output_spec = _ResampleSeriesOutputSpec

    def _run_interface(self, runtime):
        from pathlib import Path

        from ..registration.apply import resample_series
        from ..registration.io import load_affine, load_chain

        ref = nib.load(self.inputs.ref_file)
        chain = load_chain(self.inputs.xfm_files)
        hmc = load_affine(self.inputs.hmc_file) if self.inputs.hmc_file else None
        out = Path(runtime.cwd) / "resampled_bold.nii.gz"
        resample_series(self.inputs.bold_file, out, ref.shape[:3], ref.affine, chain, hmc,
                        order=self.inputs.order, engine=self.inputs.engine, device=self.inputs.device,
                        threads=self.inputs.num_threads or None)
        self._results["out_file"] = str(out)
        return runtime
