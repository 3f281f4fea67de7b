"""Atlas route: pull template-space labels into native space through the inverse registration."""
from __future__ import annotations

import nibabel as nib
import numpy as np

from ..registration.resample import resample
from .grids import as_3d


def labels_to_grid(labels: nib.Nifti1Image, ref_shape, ref_affine, transforms=()) -> nib.Nifti1Image:
    """Nearest-neighbour resampling of a label image onto a grid through a pull chain.

    For native-space labels from a template atlas, ``transforms`` maps native points to
    template points (the inverse of the template-normalisation pull).
    """
    data = np.asarray(labels.dataobj)
    out = resample(data, labels.affine, ref_shape, ref_affine, transforms, order=0)
    return nib.Nifti1Image(out.astype(np.uint8 if data.max() < 256 else np.int16), ref_affine)


def hemisphere_labels(atlas: nib.Nifti1Image, names) -> nib.Nifti1Image:
    """AAL cerebellar regions (1..26) recoded as left (1) / right (3) cerebellum, the learned
    route's table (cortex indices: AAL does not separate white matter). Vermis is split at x=0."""
    from .labels import LEFT, RIGHT

    data = np.asarray(atlas.dataobj).astype(int)
    ijk = np.indices(data.shape).reshape(3, -1)
    x = (atlas.affine[0, :3] @ ijk + atlas.affine[0, 3]).reshape(data.shape)
    out = np.zeros(data.shape, np.uint8)
    for idx, name in enumerate(names, start=1):
        sel = data == idx
        if name.endswith("_L"):
            out[sel] = LEFT[0]
        elif name.endswith("_R"):
            out[sel] = RIGHT[0]
        else:  # vermis
            out[sel & (x < 0)] = LEFT[0]
            out[sel & (x >= 0)] = RIGHT[0]
    return nib.Nifti1Image(out, atlas.affine)


def normalise(image: nib.Nifti1Image, device="cpu", sloppy=False, cache_dir=None, nonlinear=False):
    """(forward pull chain template -> image, inverse chain image -> template, template AAL atlas):
    affine of ``image`` to the embedded MNI152NLin2009aSym template (two-stage, brain-masked,
    mutual information), with ``nonlinear`` followed by the workflow's diffeomorphic SVF stage."""
    from .. import templates as tpl
    from ..registration.linear import register_to_template

    get = lambda **q: tpl.embedded_image(1, cache_dir, **q)  # noqa: E731
    template, mask = get(suffix="T1w"), get(desc="brain", suffix="mask")
    atlas = get(atlas="AAL", desc="cerebellum", suffix="dseg")
    matrix = register_to_template(image, template, mask, dof=12, device=device, sloppy=sloppy)
    if not nonlinear:
        return [matrix], [np.linalg.inv(matrix)], atlas
    from ..registration.linear import brain_mask_from_template
    from ..registration.svf import register_diffeomorphic

    result = register_diffeomorphic(image, template, matrix, fixed_mask=mask, device=device,
                                    moving_mask=brain_mask_from_template(image, mask, matrix), sloppy=sloppy)
    return result.chain, result.inverse_chain, atlas


def atlas_route(image: nib.Nifti1Image, device="cpu", sloppy=False, cache_dir=None,
                nonlinear=False) -> nib.Nifti1Image:
    """Cerebellum by registration (:func:`normalise`): AAL cerebellar labels pulled back onto the
    image grid (nearest neighbour). Labels: 1 left, 3 right (``labels.LABELS``)."""
    from .. import templates as tpl

    image = nib.Nifti1Image(as_3d(image), image.affine)
    _, inverse, atlas = normalise(image, device, sloppy, cache_dir, nonlinear)
    hemis = hemisphere_labels(atlas, tpl.aal_cerebellum_names())
    return labels_to_grid(hemis, image.shape[:3], image.affine, inverse)


def cnn_with_atlas_prior(image: nib.Nifti1Image, device="cpu", weights=None, sloppy=False,
                         cache_dir=None) -> nib.Nifti1Image:
    """The CNN centred and bounded by the AAL cerebellum through an affine normalisation (what the
    workflow does for a run, with its own chain): ``cnn.atlas_prior``."""
    from .cnn import atlas_prior, segment_cerebellum

    mean = nib.Nifti1Image(as_3d(image), image.affine)
    forward, inverse, atlas = normalise(mean, device, sloppy, cache_dir)
    centre, prior = atlas_prior(atlas, labels_to_grid(atlas, mean.shape, mean.affine, inverse), forward)
    return segment_cerebellum(image, device=device, weights=weights, centre=centre, prior=prior)
