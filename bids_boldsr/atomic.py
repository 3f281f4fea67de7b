"""Atomic file writes: write under a temporary name in the same folder, then rename.

A killed run never leaves a half-written output, and parallel participants writing the same
dataset-level file never interleave (the last complete write wins).
"""
from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def replacing(path, suffix: str = ".part"):
    """Yield a temporary path beside ``path``; on success it replaces ``path`` (mode 0644)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_text(path, text: str) -> Path:
    with replacing(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def atomic_copy(src, dst) -> Path:
    """Copy with the source's modification time (lets callers skip unchanged copies)."""
    with replacing(dst) as tmp:
        shutil.copy2(src, tmp)
    return Path(dst)


def atomic_save_nifti(img, path) -> Path:
    """``nibabel.save`` through a temporary file with the same extension (so gzip is chosen)."""
    import nibabel as nib

    ext = ".nii.gz" if str(path).endswith(".nii.gz") else Path(path).suffix
    with replacing(path, suffix=".part" + ext) as tmp:
        nib.save(img, tmp)
    return Path(path)


def remove_stale_temporaries(folder) -> int:
    """Delete the temporaries (``.<name>.<random>.part[.ext]``) that a killed run left under
    ``folder``; returns how many. Only for folders that no other live run writes into (a
    participant's own output folder)."""
    count = 0
    for tmp in Path(folder).rglob(".*.part*"):
        if tmp.is_file():
            tmp.unlink(missing_ok=True)
            count += 1
    return count
