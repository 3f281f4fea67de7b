"""Dense displacement fields as transform-chain steps, with ITK/ANTs-compatible NIfTI I/O.

A field stores, on a grid of the *fixed* space, the displacement ``u`` (world RAS mm) such
that a fixed point ``x`` maps to ``x + u(x)`` (pull convention, like ITK's
DisplacementFieldTransform). Outside the grid the displacement is zero, as in ITK.
"""
from __future__ import annotations

import nibabel as nib
import numpy as np
from scipy import ndimage

LPS = np.array([-1.0, -1.0, 1.0])  # ITK stores vectors in LPS: flip x and y


class DisplacementField:
    def __init__(self, displacement: np.ndarray, affine: np.ndarray):
        self.displacement = np.asarray(displacement, dtype=np.float32)  # (X, Y, Z, 3) RAS mm
        self.affine = np.asarray(affine, dtype=float)
        if self.displacement.ndim != 4 or self.displacement.shape[3] != 3:
            raise ValueError("displacement must be shaped (X, Y, Z, 3)")

    def map(self, points: np.ndarray) -> np.ndarray:
        """Map world points (N, 3) -> (N, 3): x + u(x), trilinear, zero outside the grid."""
        points = np.asarray(points, dtype=np.float64)
        inv = np.linalg.inv(self.affine)
        vox = inv[:3, :3] @ points.T + inv[:3, 3:4]
        u = np.stack([ndimage.map_coordinates(self.displacement[..., c], vox, order=1, mode="constant",
                                              cval=0.0) for c in range(3)], 1)
        return points + u

    def to_nifti(self) -> nib.Nifti1Image:
        """ITK/ANTs displacement image: 5-D (X, Y, Z, 1, 3), LPS vectors, vector intent."""
        data = (self.displacement * LPS.astype(np.float32))[:, :, :, None, :]
        img = nib.Nifti1Image(data, self.affine)
        img.header.set_intent("vector", (), "")
        img.header.set_xyzt_units("mm", "sec")
        return img

    @classmethod
    def from_nifti(cls, img: nib.Nifti1Image) -> "DisplacementField":
        data = np.asanyarray(img.dataobj, dtype=np.float32)
        data = data.reshape(data.shape[:3] + (3,))
        return cls(data * LPS.astype(np.float32), img.affine)


def jacobian_determinant(displacement: np.ndarray, spacing) -> np.ndarray:
    """det(I + du/dx) of a (X, Y, Z, 3) displacement on an axis-aligned grid (central
    differences), in RAS axes; the grid must be axis-aligned with the world (as ours are)."""
    grads = np.stack([np.stack(np.gradient(displacement[..., c], *spacing), -1) for c in range(3)], -2)
    return np.linalg.det(grads + np.eye(3, dtype=grads.dtype))
