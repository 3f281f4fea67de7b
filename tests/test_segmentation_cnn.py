"""Inference with the shipped weights: network shapes, any orientation, Dice on the labelled T1w."""
import json

import nibabel as nib
import numpy as np
import pytest
import torch

from conftest import shared
from bids_boldsr.bench.segment import dice_scores, main
from bids_boldsr.segmentation.cnn import WEIGHTS, UNet3D


def test_unet_keeps_odd_shapes():
    net = UNet3D(channels=4, levels=3, n_classes=5)
    assert net(torch.zeros(1, 1, 12, 20, 16)).shape == (1, 5, 12, 20, 16)


def test_dice_scores_regions():
    truth = np.array([0, 1, 1, 2, 3, 4, 0, 0])
    pred = np.array([0, 1, 3, 2, 3, 0, 0, 4])
    d = dice_scores(pred, truth)
    assert d["cerebellum"] == pytest.approx(2 * 4 / 10) and d["left"] == pytest.approx(2 * 2 / 5)
    assert d["right"] == pytest.approx(2 * 1 / 5) and d["white_matter"] == pytest.approx(2 * 1 / 4)


@pytest.mark.skipif(not WEIGHTS.exists(), reason=f"shipped weights missing: {WEIGHTS}")
def test_labelled_t1w_dice_in_a_flipped_orientation(tmp_path):
    """The real skull-stripped T1w (LIA) given as RAS: the result must still match its aseg."""
    t1 = nib.as_closest_canonical(nib.load(shared("labelled", "vxm-subj_T1w.nii.gz")))
    aseg = nib.as_closest_canonical(nib.load(shared("labelled", "vxm-subj_dseg.nii.gz")))
    nib.save(t1, tmp_path / "t1.nii.gz")
    nib.save(aseg, tmp_path / "aseg.nii.gz")
    assert main(["--image", str(tmp_path / "t1.nii.gz"), "--labels", str(tmp_path / "aseg.nii.gz"),
                 "--json", str(tmp_path / "out.json")]) == 0
    result = json.loads((tmp_path / "out.json").read_text())
    assert result["route"] == "cnn" and result["seconds"] > 0
    # shipped weights: 0.906 whole, 0.894 / 0.893 per hemisphere (docs/benchmarks-segmentation.md)
    assert result["dice"]["cerebellum"] > 0.895 and min(result["dice"]["left"], result["dice"]["right"]) > 0.88
    assert 140 < result["volumes_ml"]["cerebellum"] < 200  # truth: 168 ml


def test_atlas_prior_centre_and_margin():
    """The atlas centroid goes through the pull chain; the prior is the on-grid atlas dilated."""
    from bids_boldsr.segmentation.cnn import atlas_prior

    atlas = np.zeros((20, 20, 20), np.uint8)
    atlas[8:12, 8:12, 8:12] = 3
    tpl = nib.Nifti1Image(atlas, np.diag([2.0, 2.0, 2.0, 1.0]))  # centroid at (19, 19, 19) mm
    shift = np.eye(4)
    shift[:3, 3] = [5.0, -3.0, 1.0]  # template points -> image points
    on_grid = nib.Nifti1Image(atlas, np.diag([2.0, 2.0, 2.0, 1.0]))
    centre, prior = atlas_prior(tpl, on_grid, [shift], margin_mm=4.0)
    assert np.allclose(centre, [24.0, 16.0, 20.0])
    assert prior[10, 10, 10] and prior[6, 10, 10] and not prior[5, 10, 10]  # 4 mm = 2 voxels


@pytest.mark.skipif(not WEIGHTS.exists(), reason=f"shipped weights missing: {WEIGHTS}")
def test_prior_bounds_the_labels():
    """Labels appear only inside the prior; the right hemisphere, inside it, is still found."""
    from bids_boldsr.segmentation.cnn import segment_cerebellum
    from bids_boldsr.segmentation.labels import from_aseg

    t1 = nib.load(shared("labelled", "vxm-subj_T1w.nii.gz"))
    truth = from_aseg(np.asarray(nib.load(shared("labelled", "vxm-subj_dseg.nii.gz")).dataobj).astype(int))
    world = nib.affines.apply_affine(t1.affine, np.argwhere(truth > 0))
    centre = world.mean(0)
    x = nib.affines.apply_affine(t1.affine, np.indices(t1.shape).reshape(3, -1).T)[:, 0].reshape(t1.shape)
    prior = x > centre[0] + 5  # the right side only (RAS x), 5 mm off the midline
    labels = np.asarray(segment_cerebellum(t1, centre=centre, prior=prior).dataobj)
    assert labels[~prior].max() == 0
    right = np.isin(truth, (3, 4)) & prior
    found = np.isin(labels, (3, 4))
    assert 2 * (found & right).sum() / (found.sum() + right.sum()) > 0.85
