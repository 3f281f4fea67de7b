"""The GPU check (tests/gpu/check.sh = bids-boldsr-bench gpu) on CPU with a tiny input, as in CI.
The SR (training) and cerebellum CNN stages are slow on CPU (40 s and 1-3 min of CPU):
``python -m pytest -q -m slow tests/test_gpu_check.py``."""
import json
import os
from pathlib import Path

import pytest

from bids_boldsr.bench import main as bench
from conftest import shared

ROOT = Path(__file__).resolve().parents[1]


def test_check_script_runs_the_bench_entry():
    script = ROOT / "tests" / "gpu" / "check.sh"
    assert os.access(script, os.X_OK)
    assert "bids-boldsr-bench gpu" in script.read_text()


def test_gpu_check_on_cpu_tiny(tmp_path):
    shared("ds-xa30")
    out = tmp_path / "gpu.json"
    assert bench(["gpu", "--device", "cpu", "--tiny", "--stages", "resample", "svf", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["device"] == "cpu" and result["passed"] is True
    stages = result["datasets"]["ds-xa30"]
    assert set(stages) == {"resample", "svf"}
    res = stages["resample"]  # torch engine vs scipy: compared on CPU too
    assert res["compared"] and res["max_abs_diff_int16_steps"] <= 1.01 and res["mean_abs_diff_rel"] < 1e-5
    assert res["output_voxels_per_s"] > 0
    svf = stages["svf"]  # the device path is the reference itself on CPU
    assert svf["compared"] is False and svf["passed"] is True and svf["seconds"]["cpu"] > 0
    assert svf["mean_displacement_mm"] > 0 and svf["mean_displacement_diff_mm"] == 0.0


@pytest.mark.slow
def test_gpu_check_sr_and_cnn_on_cpu(tmp_path):
    shared("ds-xa30")
    out = tmp_path / "gpu.json"
    assert bench(["gpu", "--device", "cpu", "--tiny", "--stages", "sr", "cnn", "--json", str(out)]) == 0
    stages = json.loads(out.read_text())["datasets"]["ds-xa30"]
    sr, cnn = stages["sr"], stages["cnn"]
    assert sr["passed"] and sr["compared"] is False and sr["infer_rms_rel"] == 0.0
    assert sr["output_voxels_per_s"] > 0 and sr["seconds"]["train_cpu"] > 0
    assert cnn["passed"] and cnn["cerebellum_voxels"] > 1000 and cnn["dice"] == 1.0


def test_gpu_check_fails_outside_tolerance(tmp_path, monkeypatch, capsys):
    from bids_boldsr.bench import gpu

    shared("ds-xa30")
    monkeypatch.setattr(gpu, "stage_resample", lambda *a: {"passed": False, "compared": True,
                                                           "seconds": {"cpu": 1.0}})
    out = tmp_path / "gpu.json"
    assert bench(["gpu", "--device", "cpu", "--tiny", "--stages", "resample", "--json", str(out)]) == 1
    assert json.loads(out.read_text())["passed"] is False
    assert "outside tolerance: ds-xa30/resample" in capsys.readouterr().err


def test_gpu_check_without_a_gpu_is_exit_75(capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is visible")
    assert bench(["gpu", "--device", "cuda"]) == 75
    assert "no CUDA device is visible" in capsys.readouterr().err
