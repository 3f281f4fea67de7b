"""SUIT lobules (TemplateFlow ``tpl-SUIT``, ``atlas-Diedrichsen2009``) on the anchor template grid.

SUIT's own workflow (Diedrichsen, 2006) normalises the cerebellum separately from the cerebrum,
because whole-brain normalisation aligns the cerebellum poorly. Here the SUIT template is
registered to the anchor template (MNI152NLin2009aSym) once, with both stages restricted to the
anchor's cerebellum (its AAL cerebellar labels, dilated): affine (mutual information) then the
diffeomorphic SVF. The SUIT labels then follow the run's own chain into native space like AAL.
"""
from __future__ import annotations

import nibabel as nib
import numpy as np

from ..registration.linear import dilate_mask, pull_mask, register_to_template
from ..registration.resample import resample
from ..registration.svf import register_diffeomorphic


def cerebellar_mask(atlas: nib.Nifti1Image, margin_mm: float = 8.0) -> nib.Nifti1Image:
    """The anchor's cerebellum (any atlas label), dilated by ``margin_mm``: the registration's focus."""
    mask = dilate_mask(np.asarray(atlas.dataobj) > 0, atlas.affine, margin_mm)
    return nib.Nifti1Image(mask.astype(np.uint8), atlas.affine)


def suit_on_template(suit_t1w: nib.Nifti1Image, suit_dseg: nib.Nifti1Image, template: nib.Nifti1Image,
                     template_atlas: nib.Nifti1Image, device="cpu", sloppy=False, seed=0):
    """(SUIT labels on the grid of ``template``, registration statistics).

    ``template_atlas``: cerebellar labels on the template grid (AAL), used only as the mask."""
    mask = cerebellar_mask(template_atlas)
    matrix = register_to_template(suit_t1w, template, mask, dof=12, device=device, sloppy=sloppy, seed=seed)
    # the deformable stage works only where the SUIT template has data (6 mm in from its edges):
    # its cut-off field of view would otherwise be an edge for the warp to stretch towards
    fov = dilate_mask(~pull_mask(np.ones(suit_t1w.shape[:3], bool), suit_t1w.affine, template.shape[:3],
                              template.affine, matrix), template.affine, 6.0)
    focus = nib.Nifti1Image(((np.asarray(mask.dataobj) > 0) & ~fov).astype(np.uint8), template.affine)
    result = register_diffeomorphic(suit_t1w, template, matrix, fixed_mask=focus, device=device, sloppy=sloppy,
                                    seed=seed)
    labels = resample(np.asarray(suit_dseg.dataobj), suit_dseg.affine, template.shape[:3], template.affine,
                      result.chain, order=0)
    dtype = np.uint8 if labels.max() < 256 else np.int16
    stats = {k: v for k, v in result.stats.items() if np.isscalar(v)}
    return nib.Nifti1Image(labels.astype(dtype), template.affine), stats
