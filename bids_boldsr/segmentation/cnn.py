"""Learned cerebellum segmentation: two small plain-torch 3-D U-Nets.

1. the *locator* sees the whole field of view at 4 mm and marks the cerebellum (2 classes);
   with a normalisation the atlas gives the centre instead (:func:`atlas_prior`);
2. the *segmenter* sees a 160 x 128 x 128 mm box at 2 mm around it, in windows of its training
   crop size, and labels left/right cortex and white matter (:mod:`.labels`).
Both were trained on synthetic images only (:mod:`.train`), so any contrast works (T1w, EPI).
"""
import itertools
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from scipy import ndimage

from .grids import as_3d, normalize, resample, sample_at, world_grid
from .labels import LEFT, N_CLASSES, RIGHT

WEIGHTS = Path(__file__).resolve().parents[1] / "data" / "segmentation" / "cerebellum_unet.pt"
LOCATOR = {"channels": 8, "levels": 4, "n_classes": 2, "work_mm": 4.0}
SEGMENTER = {"channels": 16, "levels": 3, "n_classes": N_CLASSES, "work_mm": 2.0}
FINE_SHAPE = (80, 64, 64)  # 2 mm voxels: 160 x 128 x 128 mm, margin around a 115 x 70 x 70 mm cerebellum
WINDOW = (64, 48, 48)  # the training crop (synth.synth_crop: 128 x 96 x 96 mm at 2 mm)


def _block(cin, cout):
    return nn.Sequential(
        nn.Conv3d(cin, cout, 3, padding=1), nn.InstanceNorm3d(cout, affine=True), nn.LeakyReLU(0.1),
        nn.Conv3d(cout, cout, 3, padding=1), nn.InstanceNorm3d(cout, affine=True), nn.LeakyReLU(0.1))


class UNet3D(nn.Module):
    """U-Net: ``levels`` resolutions, ``channels`` doubling per level, logits out."""

    def __init__(self, channels=16, levels=3, n_classes=N_CLASSES, **_):
        super().__init__()
        ch = [channels * 2 ** i for i in range(levels)]
        self.down = nn.ModuleList(_block(1 if i == 0 else ch[i - 1], ch[i]) for i in range(levels))
        self.up = nn.ModuleList(_block(ch[i] + ch[i + 1], ch[i]) for i in range(levels - 1))
        self.head = nn.Conv3d(ch[0], n_classes, 1)
        self.multiple = 2 ** (levels - 1)  # input sizes must be divisible by this

    def forward(self, x):
        skips = []
        for i, block in enumerate(self.down):
            x = block(F.max_pool3d(x, 2) if i else x)
            skips.append(x)
        for i in reversed(range(len(self.up))):
            x = F.interpolate(x, size=skips[i].shape[2:], mode="trilinear", align_corners=False)
            x = self.up[i](torch.cat([x, skips[i]], 1))
        return self.head(x)


def load_models(weights=None, device="cpu"):
    """(locator, segmenter) in eval mode from a checkpoint written by :mod:`.train`."""
    state = torch.load(weights or WEIGHTS, map_location="cpu", weights_only=True)
    models = []
    for key, cfg in (("locator", LOCATOR), ("segmenter", SEGMENTER)):
        net = UNet3D(**json.loads(state[key + "_config"]) if key + "_config" in state else cfg)
        net.load_state_dict(state[key])
        models.append(net.to(device).eval())
    # decision threshold fitted on synthetic validation crops at the end of training (.calibration)
    models[1].threshold = float(state.get("threshold", 0.5))
    return tuple(models)


def _predict(net, vol: torch.Tensor, device) -> torch.Tensor:
    """Softmax probabilities of a normalised (X, Y, Z) volume, padded to the net's multiple."""
    m = net.multiple
    pad = [(-n) % m for n in vol.shape]
    x = F.pad(vol, [0, pad[2], 0, pad[1], 0, pad[0]])[None, None].to(device)
    with torch.no_grad():
        prob = torch.softmax(net(x), 1)[0].cpu()
    return prob[:, : vol.shape[0], : vol.shape[1], : vol.shape[2]]


def fov_grid(shape, affine, step, max_mm=320.0):
    """(affine, shape) of the axis-aligned grid of ``step`` mm covering an image's field of view
    (at most ``max_mm`` per axis, centred)."""
    world = nib.affines.apply_affine(affine, _corners(shape))
    lo, hi = world.min(0), world.max(0)
    size = np.minimum(np.ceil((hi - lo) / step) + 1, max_mm / step).astype(int)
    return world_grid((lo + hi) / 2, size, step), tuple(int(n) for n in size)


def locate(locator, data, affine, device="cpu", max_mm=320.0):
    """World centre (mm) of the cerebellum from a whole-field-of-view pass at 4 mm."""
    step = LOCATOR["work_mm"]
    grid, shape = fov_grid(data.shape, affine, step, max_mm)
    prob = _predict(locator, normalize(resample(data, affine, grid, shape, step)), device)[1].numpy()
    mask = prob > 0.5
    if mask.any():  # keep the largest blob: stray voxels elsewhere must not pull the centre
        centre = np.array(ndimage.center_of_mass(prob * _largest_blob(mask)))
    else:
        centre = np.array(np.unravel_index(np.argmax(prob), prob.shape), float)
    return nib.affines.apply_affine(grid, centre)


def _corners(shape) -> np.ndarray:
    return np.array([[i, j, k] for i in (0, shape[0] - 1) for j in (0, shape[1] - 1) for k in (0, shape[2] - 1)])


def _largest_blob(mask: np.ndarray) -> np.ndarray:
    blobs, n = ndimage.label(mask)
    if n <= 1:
        return mask
    return blobs == 1 + np.argmax(ndimage.sum(mask, blobs, range(1, n + 1)))


def _windows(shape, window, stride):
    """Corners of ``window``-sized boxes tiling ``shape`` every ``stride`` voxels (ends included)."""
    starts = []
    for n, w in zip(shape, window):
        last = max(0, n - w)
        starts.append(sorted({*range(0, last + 1, stride), last}))
    return list(itertools.product(*starts))


def segment_probabilities(segmenter, vol: torch.Tensor, device="cpu", flip=True, threshold=0.5,
                          window=WINDOW, stride=8, allowed=None) -> torch.Tensor:
    """Class probabilities on the 2 mm box, averaged over windows of the training crop size.

    Each window is intensity-normalised on its own and seen at the size the network was trained
    on: instance normalisation makes the output depend on how much context the input holds (on a
    box 1.7x the training crop the old weights over-segmented by 1-2 mm; docs/benchmarks-segmentation.md).
    ``flip`` averages with the left-right mirrored pass (left and right classes swapped back);
    islands outside the largest blob of cerebellum (``1 - p(background) > threshold``) are dropped,
    after voxels outside ``allowed`` (boolean, box grid; an anatomical prior) are set to background."""
    window = tuple(min(w, n) for w, n in zip(window, vol.shape))
    prob = torch.zeros((segmenter.head.out_channels, *vol.shape))
    count = torch.zeros(vol.shape)
    for corner in _windows(vol.shape, window, stride):
        box = tuple(slice(c, c + w) for c, w in zip(corner, window))
        sub = normalize(vol[box])
        p = _predict(segmenter, sub, device)
        if flip:
            mirrored = _predict(segmenter, sub.flip(0), device).flip(1)
            p = (p + mirrored[[0, *RIGHT, *LEFT]]) / 2
        prob[(slice(None), *box)] += p
        count[box] += 1
    prob /= count
    if allowed is not None:
        _background_outside(prob, allowed)
    return _background_outside(prob, torch.from_numpy(_largest_blob((1 - prob[0]).numpy() > threshold)))


def _background_outside(prob: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Make every voxel outside the boolean ``mask`` certain background (in place)."""
    prob[1:] *= mask
    prob[0] = torch.where(mask, prob[0], torch.ones(()))
    return prob


def segment_cerebellum(image: nib.Nifti1Image, device="cpu", weights=None, flip=True, centre=None,
                       prior=None) -> nib.Nifti1Image:
    """Cerebellum labels (:data:`.labels.LABELS` indices, uint8) on the grid of ``image``.

    Any orientation, voxel size and contrast; a 4-D image is segmented on its temporal mean.
    Anatomical priors from a normalisation, when there is one (:func:`atlas_prior`): ``centre``
    (world mm) replaces the locator, and labels are only allowed where ``prior`` (boolean, image
    grid) is true. They matter where the field of view clips the cerebellum: a BOLD slab that
    ends mid-cerebellum left the locator centred on the occipital lobe (ds-xa30).
    """
    locator, segmenter = load_models(weights, device)
    data, affine = as_3d(image), image.affine
    if centre is None:
        centre = locate(locator, data, affine, device)
    grid = world_grid(centre, FINE_SHAPE, SEGMENTER["work_mm"])
    vol = resample(data, affine, grid, FINE_SHAPE, SEGMENTER["work_mm"])  # normalised per window
    allowed = None
    if prior is not None:
        on_box = sample_at(torch.from_numpy(np.asarray(prior, np.float32))[None], np.linalg.inv(affine) @ grid,
                           FINE_SHAPE, 0.0)[0]
        allowed = on_box > 0.5
    threshold = getattr(segmenter, "threshold", 0.5)
    prob = segment_probabilities(segmenter, vol, device, flip, threshold, allowed=allowed)
    # back to the input grid, only inside the box (the rest is background)
    box = nib.affines.apply_affine(np.linalg.inv(affine) @ grid, _corners(FINE_SHAPE))
    lo = np.clip(np.floor(box.min(0)).astype(int), 0, data.shape)
    hi = np.clip(np.ceil(box.max(0)).astype(int) + 1, 0, data.shape)
    labels = np.zeros(data.shape, np.uint8)
    if (hi > lo).all():
        offset = np.eye(4)
        offset[:3, 3] = lo
        fine = sample_at(prob, np.linalg.inv(grid) @ affine @ offset, hi - lo, 0.0)
        cerebellum = fine[1:].sum(0) > threshold  # (zero outside the box, unlike 1 - p(background))
        fine_labels = torch.where(cerebellum, fine[1:].argmax(0) + 1, torch.zeros((), dtype=torch.long))
        labels[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]] = fine_labels.numpy().astype(np.uint8)
    if prior is not None:
        labels[~np.asarray(prior, bool)] = 0
    out = nib.Nifti1Image(labels, affine)
    out.header.set_xyzt_units("mm")
    return out


def atlas_prior(template_atlas: nib.Nifti1Image, atlas_on_grid: nib.Nifti1Image, pull_chain, margin_mm=15.0):
    """(centre, prior) for :func:`segment_cerebellum` from a cerebellar atlas and a normalisation.

    ``pull_chain`` maps template points to image points (the chain that resamples the image onto
    the template): the atlas cerebellum's centroid goes through it, so the centre stays right when
    the field of view clips the cerebellum. ``atlas_on_grid``: the atlas already pulled onto the
    image grid (through the inverse chain); the prior is its cerebellum dilated by ``margin_mm``.
    AAL's cerebellum is larger than the real one, so the margin only absorbs normalisation error."""
    from ..registration.linear import dilate_mask
    from ..registration.resample import map_points

    labels = np.asarray(template_atlas.dataobj) > 0
    centroid = nib.affines.apply_affine(template_atlas.affine, np.argwhere(labels).mean(0))
    centre = map_points(centroid[None], pull_chain)[0]
    on_grid = np.asarray(atlas_on_grid.dataobj) > 0
    prior = dilate_mask(on_grid, atlas_on_grid.affine, margin_mm) if on_grid.any() else None
    return centre, prior
