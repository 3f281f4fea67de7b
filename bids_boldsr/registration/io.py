"""Transforms in files other tools read: affines as ITK text transforms (via nitransforms,
readable by ANTs/ITK/fMRIPrep), displacement fields as ITK-style NIfTI (5-D, LPS vectors).

Both follow the pull convention of ``resample.py``: a file ``from-A_to-B`` maps points of
B to points of A, so ``antsApplyTransforms -r B -i A -t file`` resamples A onto B.
"""
from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np

from .field import LPS, DisplacementField


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


def load_transform(path):
    """One chain step from a file: a displacement field (.nii/.nii.gz) or an ITK affine."""
    name = str(path)
    return load_field(path) if name.endswith((".nii", ".nii.gz")) else load_affine(path)


def load_chain(paths) -> list:
    return [load_transform(p) for p in paths or []]


_RAS_LPS = np.diag([*LPS, 1.0])


def save_composite_h5(chain, path) -> Path:
    """Write a pull chain (matrices and fields, nearest the output first) as one ITK composite
    transform (.h5), the format of fMRIPrep's ``*_xfm.h5``: ``antsApplyTransforms -t file.h5``.

    ITK's CompositeTransform applies its *last* stored transform to a point first, so the
    chain is stored in reverse order (affine in group 1, warp in group 2 for ``[warp, affine]``).
    """
    import h5py

    with h5py.File(str(path), "w") as h5:
        group = h5.create_group("TransformGroup")
        _h5_transform(group, 0, "CompositeTransform_double_3_3", None, None)
        for k, step in enumerate(reversed(list(chain)), start=1):
            if isinstance(step, DisplacementField):
                params, fixed = _itk_field_parameters(step)
                _h5_transform(group, k, "DisplacementFieldTransform_double_3_3", params, fixed)
            else:
                lps = _RAS_LPS @ np.asarray(step, dtype=float) @ _RAS_LPS
                params = np.concatenate([lps[:3, :3].ravel(), lps[:3, 3]])
                _h5_transform(group, k, "AffineTransform_double_3_3", params, np.zeros(3))
    return Path(path)


def _h5_transform(group, index, kind, params, fixed):
    sub = group.create_group(str(index))
    sub.create_dataset("TransformType", data=[kind.encode()])
    if params is not None:
        sub.create_dataset("TransformParameters", data=np.asarray(params, dtype=np.float64))
        sub.create_dataset("TransformFixedParameters", data=np.asarray(fixed, dtype=np.float64))


def _itk_field_parameters(field: DisplacementField):
    """ITK displacement-field parameters: LPS vectors, component fastest then x, y, z; fixed
    parameters are size, origin, spacing and direction (row-major), all in LPS."""
    shape = field.displacement.shape[:3]
    zooms = np.sqrt((field.affine[:3, :3] ** 2).sum(0))
    lps = _RAS_LPS @ field.affine
    vectors = field.displacement * LPS
    params = np.moveaxis(vectors, -1, 0).ravel(order="F")
    fixed = np.concatenate([shape, lps[:3, 3], zooms, (lps[:3, :3] / zooms).ravel()])
    return params, fixed
