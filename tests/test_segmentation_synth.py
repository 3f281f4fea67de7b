"""Synthesis from real label maps: shapes, ranges, label preservation, reproducibility."""
import numpy as np
import pytest
import torch

from conftest import shared
from bids_boldsr.segmentation import synth
from bids_boldsr.segmentation.grids import gaussian_blur, normalize


@pytest.fixture(scope="module")
def labelmap():
    return synth.load_label_map(shared("labelmaps", "training_seg_01.nii.gz"))


def test_identity_geometry_preserves_labels(labelmap):
    gen = torch.Generator().manual_seed(0)
    shape = (40, 30, 20)
    got = synth.sample_geometry(labelmap, labelmap.cerebellum, shape, 1.0, gen, max_deg=0, max_scale=0,
                                elastic_mm=0, epi_mm=0)
    # the same voxels read straight from the label map (its world grid is 1 mm, LIA)
    world = (np.stack(np.meshgrid(*[np.arange(n) - (n - 1) / 2 for n in shape], indexing="ij"), -1)
             + labelmap.cerebellum.numpy())
    m = labelmap.world_to_vox.numpy()
    vox = np.rint(world @ m[:3, :3].T + m[:3, 3]).astype(int)
    want = labelmap.labels.numpy()[vox[..., 0], vox[..., 1], vox[..., 2]]
    assert np.array_equal(got.numpy(), want)
    assert (synth.COMPACT_TO_TARGET[got] > 0).float().mean() > 0.3  # centred on the cerebellum


def test_crop_shapes_ranges_and_soft_targets(labelmap):
    gen = torch.Generator().manual_seed(1)
    image, target = synth.synth_crop(labelmap, gen, shape=(64, 48, 48), contrast="epi", bold_like=True)
    assert image.shape == (1, 32, 24, 24) and target.shape == (5, 32, 24, 24)
    assert image.min() >= 0 and image.max() <= 1.5 and image.std() > 0.1
    assert torch.allclose(target.sum(0), torch.ones(32, 24, 24))
    # 1 mm cerebellum voxels / 8 = soft 2 mm volume (no voxels lost by the pooling)
    assert 0.05 < target[1:].sum() / target[0].numel() < 0.9
    head_img, head_target = synth.synth_head(labelmap, gen, shape=(64, 64, 64))
    assert head_img.shape == (1, 32, 32, 32) and head_target.shape == (2, 32, 32, 32)
    # a whole head at 4 mm: cerebellum is a small part (about 150 ml of a 2 l box)
    assert 0.005 < head_target[1].mean() < 0.1


def test_epi_contrast_csf_bright_and_seeded(labelmap):
    compact = torch.tensor([synth.ASEG_TO_COMPACT[v] for v in (2, 3, 4)]).repeat_interleave(1000)
    gen = torch.Generator().manual_seed(2)
    epi = synth.sample_intensities(compact, gen, "epi").view(3, -1).mean(1)
    assert epi[2] > epi[1] > epi[0]  # CSF > GM > WM on T2*-weighted EPI
    t1 = synth.sample_intensities(compact, gen, "t1").view(3, -1).mean(1)
    assert t1[0] > t1[1] > t1[2]
    a = synth.synth_crop(labelmap, torch.Generator().manual_seed(5), shape=(32, 32, 32))[0]
    b = synth.synth_crop(labelmap, torch.Generator().manual_seed(5), shape=(32, 32, 32))[0]
    assert torch.equal(a, b)


def test_blur_and_normalize():
    vol = torch.zeros(21, 21, 21)
    vol[10, 10, 10] = 1
    out = gaussian_blur(vol, [2.0, 0.0, 1.0])
    # mass kept; peak = 1 / (2 pi sigma_x sigma_z) for sigmas 2 and 1
    assert abs(float(out.sum()) - 1) < 1e-5 and abs(float(out[10, 10, 10]) - 1 / (4 * np.pi)) < 2e-3
    assert torch.count_nonzero(out[10, :, 10]) == 1  # no blur along the axis with sigma 0
    ramp = torch.linspace(-3, 7, 1000).view(10, 10, 10)
    norm = normalize(ramp)
    assert norm.min() == 0 and 0.99 < float(norm.max()) <= 1.01
