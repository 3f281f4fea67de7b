"""``bids-boldsr-bench sr`` end to end on a real run (sloppy training, one scored volume)."""
import json
from pathlib import Path

import numpy as np
import pytest

from bids_boldsr.bench.sr import simulation_grids
from bids_boldsr.bench import main as bench_main

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
BOLD = DATA / "ds-xa30" / "sub-01" / "func" / "sub-01_task-fa_run-1_bold.nii.gz"


def test_simulation_grids_are_exact_for_non_integer_factor():
    affine = np.diag([3.0, 3.0, 3.3, 1.0])
    hr_shape, lr_shape, lr_affine, _ = simulation_grids((80, 80, 35), affine, 1.5)
    assert hr_shape == (78, 78, 33) and lr_shape == (52, 52, 22)
    np.testing.assert_allclose(np.diag(lr_affine)[:3], [4.5, 4.5, 4.95])


def test_bench_sr_writes_table_and_json(tmp_path, capsys):
    if not BOLD.exists():
        pytest.skip(f"real data not found at {DATA} (../shared/data next to the repository)")
    out = tmp_path / "sr.json"
    rc = bench_main(["sr", "--bold", str(BOLD), "--factor", "2", "--volumes", "1", "--sloppy",
                     "--json", str(out), "--work-dir", str(tmp_path / "work")])
    assert rc == 0
    result = json.loads(out.read_text())
    assert result["factor"] == 2 and result["degradation"] == "acquisition"
    assert "compute_epi_mask" in result["mask"] and "percentile" in result["psnr_max"]
    methods = result["methods"]
    assert set(methods) == {"tvsr", "tvsr-published", "spline", "trilinear"}
    assert methods["spline"]["psnr"] > methods["trilinear"]["psnr"] + 0.5  # measured: +1.5 dB
    assert 15 < methods["trilinear"]["psnr"] < 40 and 0.5 < methods["spline"]["ssim"] < 1
    assert methods["tvsr"]["psnr"] > methods["spline"]["psnr"]  # even seconds of training + B-consistency
    assert "tvsr" in capsys.readouterr().out
