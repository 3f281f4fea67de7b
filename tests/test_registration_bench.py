"""``bids-boldsr-bench register`` end to end on small synthesised pairs."""
import json
from pathlib import Path

import numpy as np
import pytest

from bids_boldsr.bench.register import dice_per_structure, main

LABELMAPS = Path(__file__).resolve().parents[2] / "shared" / "data" / "labelmaps"


def test_dice_per_structure():
    a = np.zeros((4, 4, 4), int)
    b = a.copy()
    a[:2], b[:1] = 17, 17  # 32 vs 16 voxels, 16 shared
    assert dice_per_structure(a, b) == {"Left-Hippocampus": pytest.approx(2 * 16 / 48)}


def test_bench_register_synthetic_pair(tmp_path):
    maps = sorted(LABELMAPS.glob("training_seg_0[12].nii.gz"))
    if len(maps) < 2:
        pytest.skip(f"real label maps missing in {LABELMAPS}")
    folder = tmp_path / "maps"
    folder.mkdir()
    for m in maps:
        (folder / m.name).symlink_to(m)
    out = tmp_path / "bench.json"
    rc = main(["--synth-pairs", "1", "--labelmaps", str(folder), "--resolution", "4", "--methods", "bids-boldsr",
               "--sloppy", "--json", str(out)])
    assert rc == 0
    report = json.loads(out.read_text())
    ours = report["methods"]["bids-boldsr"]
    assert ours["pairs"] == 1 and len(ours["per_structure"]) > 20
    assert ours["mean_dice"] > ours["mean_dice_affine_only"] > 0.3
    assert ours["neg_jacobian_fraction"] < 1e-3 and ours["seconds"] > 0


def test_bench_register_usage_error():
    assert main([]) == 64
