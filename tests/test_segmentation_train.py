"""Training: the loss falls on a fixed sample, and a seeded run reproduces its weights' hash."""
import json

import torch

from conftest import shared
from bids_boldsr.segmentation import synth
from bids_boldsr.segmentation.cnn import UNet3D
from bids_boldsr.segmentation.train import main, train_step


def test_short_training_lowers_loss():
    torch.manual_seed(0)
    lm = synth.load_label_map(shared("labelmaps", "training_seg_02.nii.gz"))
    image, target = synth.synth_crop(lm, torch.Generator().manual_seed(0), shape=(32, 32, 32))
    net = UNet3D(channels=4, levels=2)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    losses = [train_step(net, opt, image[None], target[None]) for _ in range(20)]
    assert losses[-1] < 0.7 * losses[0], losses


def test_seeded_run_reproduces_weights_hash(tmp_path):
    maps = tmp_path / "maps"
    maps.mkdir()
    for n in ("01", "13"):  # 13 is held out: training must ignore it
        (maps / f"training_seg_{n}.nii.gz").symlink_to(shared("labelmaps", f"training_seg_{n}.nii.gz"))
    records = []
    for run in ("a", "b"):
        assert main(["--labelmaps", str(maps), "--out", str(tmp_path / run), "--steps", "2", "--seed", "3",
                     "--workers", "0", "--calibration-crops", "2"]) == 0
        records.append(json.loads((tmp_path / run / "cerebellum_unet.json").read_text()))
    assert records[0]["weights_sha256"] == records[1]["weights_sha256"]
    # the decision threshold is fitted on seeded validation crops: reproducible too, and stored
    assert records[0]["threshold"] == records[1]["threshold"] and 0.3 <= records[0]["threshold"] <= 0.95
    assert torch.load(tmp_path / "a" / "cerebellum_unet.pt", weights_only=True)["threshold"] == records[0]["threshold"]
    assert records[0]["training_data"] == ["training_seg_01.nii.gz"] and records[0]["steps"] == 2
    assert (tmp_path / "a" / "cerebellum_unet.pt").stat().st_size < 5e6
