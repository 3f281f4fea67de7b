"""Apply a composed transform chain to a 4-D series, one interpolation per volume, streamed."""
from __future__ import annotations

import numpy as np
from scipy import ndimage

from ..nifti import load_series, series_max_abs, write_series
from .resample import grid_points, map_points, points_to_voxels


def resample_series(bold_file, out_file, ref_shape, ref_affine, transforms=(),
                    volume_transforms=None, order=3, progress=True) -> None:
    """Resample every volume of ``bold_file`` onto a reference grid.

    ``transforms`` is the chain shared by all volumes (output space -> BOLD reference), evaluated
    once; ``volume_transforms`` an optional ``(T, 4, 4)`` stack of per-volume pull matrices
    (BOLD reference -> volume t, i.e. head motion) appended to the chain, so motion,
    coregistration and normalisation are applied in a single interpolation.
    """
    from tqdm import tqdm

    img = load_series(bold_file)
    n = img.shape[3]
    points = map_points(grid_points(ref_shape, ref_affine, dtype=np.float32), transforms)
    bar = tqdm(total=n, desc=f"resample {getattr(out_file, 'name', '')}", unit="vol",
               disable=not progress, mininterval=5)

    def volume(t):
        bar.update(1)
        pts = points if volume_transforms is None else map_points(points, [volume_transforms[t]])
        vol = np.asarray(img.dataobj[..., t], dtype=np.float32)
        if order > 1:
            vol = ndimage.spline_filter(vol, order=order)
        vals = ndimage.map_coordinates(vol, points_to_voxels(pts, img.affine), order=order,
                                       mode="constant", cval=0.0, prefilter=False)
        return vals.reshape(tuple(ref_shape))
    # int16 scaled for the whole series' range (+50 % for spline overshoot), float32 if it overflows
    write_series(out_file, tuple(ref_shape) + (n,), ref_affine, img.header, volume,
                 series_max_abs(img))
    bar.close()
