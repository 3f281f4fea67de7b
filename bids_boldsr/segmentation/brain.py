"""Learned brain mask (skull stripping) for any contrast: a small 3-D U-Net on the whole head at 4 mm.

Trained on synthetic heads only (:mod:`.train_brain`, the SynthStrip recipe), so it would not depend
on the template. Meant for the T1w -> template affine (``register_to_template(moving_brain=...)``),
which, matching a head with skull to the skull-stripped template, let the template brain grow over
a bright scalp (ds-xa30) before 0.8; the workflow fixes that with a head atlas instead
(:mod:`.head_atlas`). **Not used by the workflow and no weights shipped**: the weights the
committed recipe gives on CPU (1000 steps) cut cortex on real T1w images
(``bids-boldsr-bench brain``, docs/benchmarks-segmentation.md).
"""
import nibabel as nib
import numpy as np
import torch
from scipy import ndimage

from .cnn import UNet3D, _largest_blob, _predict, fov_grid
from .grids import as_3d, normalize, resample
from ..registration.linear import block_average

WEIGHTS_NAME = "brain_unet.pt"  # what train_brain writes
BRAIN_NET = {"channels": 8, "levels": 4, "n_classes": 2, "work_mm": 4.0}


def load_brain_net(weights, device="cpu") -> UNet3D:
    state = torch.load(weights, map_location="cpu", weights_only=True)
    net = UNet3D(**BRAIN_NET)
    net.load_state_dict(state["net"])
    return net.to(device).eval()


def brain_probability(image: nib.Nifti1Image, weights, device="cpu"):
    """(probability, grid affine) of the brain on the 4 mm grid covering the field of view,
    averaged with the left-right mirrored pass."""
    net = load_brain_net(weights, device)
    data, affine = as_3d(image), np.asarray(image.affine, float)
    step = BRAIN_NET["work_mm"]
    grid, shape = fov_grid(data.shape, affine, step)
    # a fine T1w (0.7 mm) is block-averaged towards 2 mm first: the anti-aliasing blur is then cheap
    k = [max(1, int(step / (2 * z))) for z in np.sqrt((affine[:3, :3] ** 2).sum(0))]
    if max(k) > 1:
        data, affine = block_average(data, affine, k)
    vol = normalize(resample(data, affine, grid, shape, step))
    prob = (_predict(net, vol, device)[1] + _predict(net, vol.flip(0), device)[1].flip(0)) / 2
    return prob.numpy(), grid


def brain_mask(image: nib.Nifti1Image, weights, device="cpu", threshold=0.5) -> nib.Nifti1Image:
    """uint8 brain mask on the grid of ``image``: the largest connected blob of the 4 mm
    probability, holes filled, interpolated (trilinear) and thresholded on the image grid."""
    prob, grid = brain_probability(image, weights, device)
    blob = prob > threshold
    if blob.any():
        blob = ndimage.binary_fill_holes(_largest_blob(blob))
    prob = np.where(blob, np.maximum(prob, threshold + 1e-3), np.minimum(prob, threshold)).astype(np.float32)
    vox = np.linalg.inv(grid) @ image.affine  # image voxel -> 4 mm grid voxel
    mask = ndimage.affine_transform(prob, vox[:3, :3], vox[:3, 3], output_shape=image.shape[:3], order=1,
                                    mode="constant", cval=0.0) > threshold
    hdr = nib.Nifti1Header()
    hdr.set_data_dtype(np.uint8)
    out = nib.Nifti1Image(mask.astype(np.uint8), image.affine, hdr)
    out.header.set_xyzt_units("mm")
    return out
