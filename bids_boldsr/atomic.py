"""Atomic file writes: write under a temporary name in the same folder, then rename.

A killed run never leaves a half-written output, and parallel participants writing the same
dataset-level file never interleave (the last complete write wins).
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path


def _tmp_path(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    os.close(fd)
    return Path(tmp)


def atomic_write_text(path, text: str) -> Path:
    path = Path(path)
    tmp = _tmp_path(path)
    try:
        tmp.write_text(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def atomic_copy(src, dst) -> Path:
    dst = Path(dst)
    tmp = _tmp_path(dst)
    try:
        shutil.copyfile(src, tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, dst)
    finally:
        tmp.unlink(missing_ok=True)
    return dst


def atomic_save_nifti(img, path) -> Path:
    """``nibabel.save`` through a temporary file with the same extension (so gzip is chosen)."""
    import nibabel as nib

    path = Path(path)
    ext = ".nii.gz" if path.name.endswith(".nii.gz") else path.suffix
    tmp = _tmp_path(path)
    tmp_ext = tmp.with_name(tmp.name + ext)
    try:
        nib.save(img, tmp_ext)
        os.chmod(tmp_ext, 0o644)
        os.replace(tmp_ext, path)
    finally:
        tmp.unlink(missing_ok=True)
        tmp_ext.unlink(missing_ok=True)
    return path
