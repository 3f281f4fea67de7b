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


def test_bench_register_t1w_pair_and_resume(tmp_path):
    """The real T1w against a label-map image at T1w contrast; a second run reuses the first."""
    labelled = LABELMAPS.parent / "labelled"
    maps = sorted(LABELMAPS.glob("training_seg_01.nii.gz"))
    if not maps or not (labelled / "vxm-subj_T1w.nii.gz").exists():
        pytest.skip("real labelled T1w or label maps missing")
    folder = tmp_path / "maps"
    folder.mkdir()
    (folder / maps[0].name).symlink_to(maps[0])
    out, again = tmp_path / "t1w.json", tmp_path / "again.json"
    args = ["--t1w-pairs", "1", "--t1w", str(labelled / "vxm-subj_T1w.nii.gz"),
            "--t1w-labels", str(labelled / "vxm-subj_dseg.nii.gz"), "--labelmaps", str(folder),
            "--resolution", "4", "--methods", "bids-boldsr", "--sloppy"]
    assert main(args + ["--json", str(out)]) == 0
    first = json.loads(out.read_text())
    pair = first["methods"]["bids-boldsr"]["per_pair"][0]
    assert pair["pair"] == ["vxm-subj_T1w.nii.gz", "training_seg_01.nii.gz"] and pair["kind"] == "t1w"
    assert first["by_pair_kind"]["t1w"]["bids-boldsr"]["mean_dice"] == pytest.approx(
        np.mean(list(pair["dice"].values())))
    assert np.mean(list(pair["dice"].values())) > np.mean(list(pair["dice_affine"].values()))
    assert main(args + ["--json", str(again), "--resume", str(out)]) == 0
    second = json.loads(again.read_text())["methods"]["bids-boldsr"]
    assert second["per_pair"][0]["reused_from"] == str(out)
    assert second["mean_dice"] == first["methods"]["bids-boldsr"]["mean_dice"]


def test_register_sr_error_undoes_the_perturbation():
    from bids_boldsr.bench.register_sr import point_error, rigid

    rng = np.random.default_rng(3)
    truth, move = rigid(rng), rigid(rng)
    pts = rng.uniform(-60, 60, (200, 3))
    assert point_error(np.linalg.inv(move) @ (move @ truth), truth, pts) < 1e-9
    assert 0.5 < point_error(move @ truth, truth, pts) < 2 * np.sqrt(3) + 60 * np.deg2rad(2) * 3


def test_bench_missing_input_is_one_line_exit_66(tmp_path, capsys):
    from bids_boldsr.bench import main as bench

    assert bench(["template", "--t1w", str(tmp_path / "missing.nii.gz")]) == 66
    err = capsys.readouterr().err
    assert err.startswith("bids-boldsr-bench template: error:") and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_coreg_spread_against_the_consensus():
    from bids_boldsr.bench.coreg import perturbation, spread

    rng = np.random.default_rng(1)
    pts = rng.uniform(-60, 60, (500, 3))
    shifted = np.eye(4)
    shifted[:3, 3] = [0, 5, 0]
    out = spread([np.eye(4), np.eye(4), shifted], pts)  # the median is the identity
    np.testing.assert_allclose(out["p95_to_consensus_mm"], [0, 0, 5], atol=1e-9)
    assert out["max_pairwise_p95_mm"] == pytest.approx(5)
    centre = np.array([5.0, -10, 20])
    move = perturbation(rng, centre, 10, 10)
    assert np.linalg.norm(move[:3, :3] @ centre + move[:3, 3] - centre) <= 10 * np.sqrt(3)
    assert np.allclose(move[:3, :3] @ move[:3, :3].T, np.eye(3))
