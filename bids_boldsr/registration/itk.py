"""Affine transforms on disk in ITK/ANTs text format (readable by antsApplyTransforms)."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def save_affines(path, matrices) -> Path:
    """Write one (4x4) or several (T,4,4) RAS pull matrices as an ITK .txt transform file."""
    from nitransforms.linear import Affine, LinearTransformsMapping

    m = np.asarray(matrices, dtype=float)
    xfm = Affine(m) if m.ndim == 2 else LinearTransformsMapping(m)
    xfm.to_filename(str(path), fmt="itk")
    return Path(path)


def load_affines(path) -> np.ndarray:
    """Read an ITK transform file back to a (4,4) or (T,4,4) RAS pull matrix."""
    import nitransforms as nt

    return np.asarray(nt.linear.load(str(path), fmt="itk").matrix, dtype=float)
