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
    assert result["route"] == "cnn" and result["seconds"] < 60
    # shipped weights: 0.906 whole, 0.894 / 0.893 per hemisphere (docs/benchmarks-segmentation.md)
    assert result["dice"]["cerebellum"] > 0.895 and min(result["dice"]["left"], result["dice"]["right"]) > 0.88
    assert 140 < result["volumes_ml"]["cerebellum"] < 200  # truth: 168 ml
