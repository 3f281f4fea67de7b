"""Helpers shared by the thin nipype interfaces."""
from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib


def save_img(img: nib.Nifti1Image, cwd, name: str) -> str:
    path = Path(cwd) / name
    nib.save(img, path)
    return str(path)


def save_json(data: dict, cwd, name: str) -> str:
    path = Path(cwd) / name
    path.write_text(json.dumps(data, indent=2, default=_plain) + "\n")
    return str(path)


def _plain(obj):
    import numpy as np

    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return str(obj)
