"""Atlas route: pull template-space labels into native space through the inverse registration."""
from __future__ import annotations

import nibabel as nib
import numpy as np

from ..registration.resample import resample


def labels_to_grid(labels: nib.Nifti1Image, ref_shape, ref_affine, transforms=()) -> nib.Nifti1Image:
    """Nearest-neighbour resampling of a label image onto a grid through a pull chain.

    For native-space labels from a template atlas, ``transforms`` maps native points to
    template points (the inverse of the template-normalisation pull).
    """
    data = np.asarray(labels.dataobj)
    out = resample(data, labels.affine, ref_shape, ref_affine, transforms, order=0)
    return nib.Nifti1Image(out.astype(np.uint8 if data.max() < 256 else np.int16), ref_affine)


def invert_chain(matrices) -> list:
    """Inverse of a chain of affine pull matrices (reverse order, each inverted)."""
    return [np.linalg.inv(np.asarray(m)) for m in reversed(list(matrices))]
