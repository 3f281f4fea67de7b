"""The GPU check (tests/gpu/check.sh = bids-boldsr-bench gpu) on CPU with a tiny input, as in CI.
The cerebellum CNN stage is slow on CPU (1-3 min): ``python -m pytest -q -m slow tests/test_gpu_check.py``."""
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
    assert bench(["gpu", "--device", "cpu", "--tiny", "--stages", "resample", "sr", "svf",
                  "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["device"] == "cpu" and result["passed"] is True
    stages = result["datasets"]["ds-xa30"]
    assert set(stages) == {"resample", "sr", "svf"}
    res = stages["resample"]  # torch engine vs scipy: compared on CPU too
    assert res["compared"] and res["max_abs_diff_int16_steps"] <= 1.01 and res["mean_abs_diff_rel"] < 1e-5
    assert res["output_voxels_per_s"] > 0
    for name in ("sr", "svf"):  # the device path is the reference itself on CPU
        assert stages[name]["compared"] is False and stages[name]["passed"] is True
        assert all(s > 0 for s in stages[name]["seconds"].values())
    assert stages["sr"]["infer_rms_rel"] == 0.0 and stages["svf"]["mean_displacement_mm"] > 0


@pytest.mark.slow
def test_gpu_check_cnn_on_cpu(tmp_path):
    shared("ds-xa30")
    out = tmp_path / "gpu.json"
    assert bench(["gpu", "--device", "cpu", "--tiny", "--stages", "cnn", "--json", str(out)]) == 0
    cnn = json.loads(out.read_text())["datasets"]["ds-xa30"]["cnn"]
    assert cnn["passed"] and cnn["cerebellum_voxels"] > 1000 and cnn["dice"] == 1.0
