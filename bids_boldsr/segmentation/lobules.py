"""Lobules inside the learned cerebellum: the CNN gives the boundary, the atlas the parcellation.

Atlas labels pulled from a template are only as good as the normalisation and the atlas' own
cerebellum (AAL's is about 1.2x too large: docs/benchmarks-segmentation.md), whereas the CNN
finds the cerebellum in the image itself but has no lobules. Every voxel of the CNN cerebellum
takes the atlas label nearest to it (in mm); atlas voxels outside the CNN cerebellum are dropped.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage


def lobules_in_mask(cerebellum: np.ndarray, atlas: np.ndarray, zooms, margin_mm=20.0) -> np.ndarray:
    """Atlas labels (``atlas``, 0 = none) carried onto the voxels of the boolean ``cerebellum``.

    Both arrays on one grid of voxel size ``zooms`` (mm). Voxels farther than ``margin_mm``
    from any atlas label keep 0 (the atlas does not reach them: no lobule to give)."""
    out = np.zeros(atlas.shape, atlas.dtype)
    if not cerebellum.any() or not atlas.any():
        return out
    # work in the bounding box of both, plus the margin (a 0.7 mm T1w is 40 M voxels)
    pad = np.ceil(margin_mm / np.asarray(zooms, float)).astype(int)
    pts = np.argwhere(cerebellum | (atlas > 0))
    lo = np.maximum(pts.min(0) - pad, 0)
    hi = np.minimum(pts.max(0) + pad + 1, atlas.shape)
    box = tuple(slice(a, b) for a, b in zip(lo, hi))
    sub = atlas[box]
    dist, idx = ndimage.distance_transform_edt(sub == 0, sampling=zooms, return_indices=True)
    nearest = sub[tuple(idx)]
    out[box] = np.where(cerebellum[box] & (dist <= margin_mm), nearest, 0)
    return out
