"""Transforms in files other tools read: affines as ITK text transforms (via nitransforms,
readable by ANTs/ITK/fMRIPrep), displacement fields as ITK-style NIfTI (5-D, LPS vectors).

Both follow the pull convention of ``resample.py``: a file ``from-A_to-B`` maps points of
B to points of A, so ``antsApplyTransforms -r B -i A -t file`` resamples A onto B.
"""
from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np

from .field import DisplacementField


def save_affine(matrix: np.ndarray, path) -> Path:
    """Write a 4x4 RAS pull matrix, or a (T,4,4) stack (one per volume: head motion), as an ITK
    transform file (.txt/.tfm text, or .mat binary for a single matrix)."""
    from nitransforms.linear import Affine, LinearTransformsMapping

    m = np.asarray(matrix, dtype=float)
    (Affine(m) if m.ndim == 2 else LinearTransformsMapping(m)).to_filename(str(path), fmt="itk")
    return Path(path)


def load_affine(path) -> np.ndarray:
    """Read an ITK/ANTs affine file back to a 4x4 (or (T,4,4)) RAS pull matrix."""
    from nitransforms.linear import load

    return np.asarray(load(str(path), fmt="itk").matrix, dtype=float)


def save_field(field: DisplacementField, path) -> Path:
    nib.save(field.to_nifti(), str(path))
    return Path(path)


def load_field(path) -> DisplacementField:
    return DisplacementField.from_nifti(nib.load(str(path)))


def save_chain(chain, prefix) -> list[Path]:
    """Write a transform chain as numbered files ``{prefix}_{k}.txt`` (matrices) or
    ``{prefix}_{k}.nii.gz`` (fields), in chain order (nearest the output first); ANTs'
    ``-t`` options take them in that same order."""
    paths = []
    for k, step in enumerate(chain):
        if isinstance(step, DisplacementField):
            paths.append(save_field(step, f"{prefix}_{k}.nii.gz"))
        else:
            paths.append(save_affine(step, f"{prefix}_{k}.txt"))
    return paths
