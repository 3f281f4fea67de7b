"""profile.tsv of a real small participant run (BOLD-only ds-xa30, 6 volumes), progress lines, and
the per-stage table of ``bids-boldsr-bench pipeline``. Slow (a participant run: 2-11 min on 2 shared
cores): ``python -m pytest -q -m slow tests/test_profile.py``; tests/test_profile_unit.py is the fast one."""
import json

import nibabel as nib
import numpy as np
import pytest

from bids_boldsr.cli.run import main
from bids_boldsr.profile import COLUMNS, format_table, read_profile
from conftest import make_bids, shared


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("profile")
    img = nib.load(shared("ds-xa30") / "sub-01/func/sub-01_task-fa_run-1_bold.nii.gz")
    cut = nib.Nifti1Image(np.asarray(img.dataobj[..., :6]), img.affine, img.header)
    ds = make_bids(root / "ds", cut, sub="01", task="fa", tr=1.0)
    out = root / "out"
    argv = [str(ds), str(out), "participant", "-w", str(root / "w"), "--sloppy", "--nprocs", "2",
            "--sr-factor", "1.5", "--sr-method", "spline", "--output-spaces", "bold",
            "MNI152NLin2009aSym:res-2"]
    return argv, out


def _profile(out):
    logs = sorted((out / "sub-01" / "log").glob("*/profile.tsv"), key=lambda p: p.stat().st_mtime)
    assert logs, "no profile.tsv written"
    return logs[-1], read_profile(logs[-1])


@pytest.mark.slow
def test_profile_tsv_of_a_real_run(small_run, capfd):
    argv, out = small_run
    assert main(argv) == 0
    err = capfd.readouterr().err
    tsv, rows = _profile(out)
    assert tuple(rows[0].keys()) == COLUMNS
    by_stage = {r["stage"]: r for r in rows}
    for stage in ("boldref", "hmc", "super_resolve", "to_MNI152NLin2009aSym_res_2"):
        assert stage in by_stage, sorted(by_stage)
    res = by_stage["to_MNI152NLin2009aSym_res_2"]
    assert res["status"] == "computed"
    assert 0 <= float(res["start_s"]) <= float(res["end_s"])
    assert abs(float(res["end_s"]) - float(res["start_s"]) - float(res["wall_s"])) < 0.02
    assert float(res["wall_s"]) > 0
    assert float(res["cpu_s"]) > 0.2  # the resampling computes (sampled at 0.5 s)
    assert 0.05 < float(res["peak_rss_gb"]) < 8
    if float(res["wall_s"]) >= 2.0:  # 4 sampling intervals
        assert float(res["cpu_per_wall"]) <= 2.0 * 1.5  # not more than the --nprocs 2 cores (+ sampling)
    else:
        assert res["cpu_per_wall"] == "n/a"
    summary = json.loads((tsv.parent / "profile.json").read_text())
    assert summary["nodes_computed"] == len(rows) and summary["machine"]["cpus"] >= 1
    assert summary["peak_total_rss_gb"] >= max(float(r["peak_rss_gb"]) for r in rows
                                               if r["peak_rss_gb"] != "n/a")
    assert "to_MNI152NLin2009aSym_res_2" in format_table(rows)
    # one progress line per long step, from the worker process
    assert "resample resampled_bold.nii.gz: vol 6/6 (100%)" in err


@pytest.mark.slow
def test_profile_of_a_rerun_marks_reused_steps(small_run):
    argv, out = small_run
    assert main(argv) == 0
    _, rows = _profile(out)
    by_stage = {r["stage"]: r for r in rows}
    assert by_stage["super_resolve"]["status"] == "reused"
    assert by_stage["super_resolve"]["cpu_s"] == "n/a"


@pytest.mark.slow
def test_bench_pipeline_prints_the_per_stage_table(small_run, capsys, tmp_path):
    from bids_boldsr.bench import main as bench

    argv, out = small_run
    work = argv[argv.index("-w") + 1]
    js = tmp_path / "pipeline.json"
    assert bench(["pipeline", argv[0], "--out", str(out), "--work", work, "--json", str(js), "--", *argv[5:]]) == 0
    printed = capsys.readouterr().out
    assert "wall s" in printed and "peak GB" in printed and "super_resolve" in printed
    assert "total " in printed and "'cpus':" in printed
    result = json.loads(js.read_text())
    assert result["exit_code"] == 0 and result["total_s"] > 0
    stages = result["participants"]["sub-01"]["stages"]
    assert stages and set(COLUMNS) == set(stages[0])
