"""profile.py on a tiny real Nipype MultiProc run: CPU seconds and peak memory land on the right node."""
import json

from bids_boldsr.profile import COLUMNS, Sampler, format_table, read_profile, write_profile


def burn(seconds, megabytes):
    import time

    import numpy as np

    block = np.ones(int(megabytes) * 2 ** 20 // 8)  # resident: every page written
    t0, x = time.process_time(), 0.0
    while time.process_time() - t0 < seconds:
        x += float(block[:1000].sum())
    return x


def idle(seconds):
    import time

    time.sleep(seconds)
    return seconds


def test_profile_rows_of_a_multiproc_run(tmp_path):
    import time

    from nipype.interfaces.utility import Function
    from nipype.pipeline import engine as pe

    wf = pe.Workflow(name="sub_01_wf", base_dir=str(tmp_path / "w"))
    hot = pe.Node(Function(input_names=["seconds", "megabytes"], output_names=["out"], function=burn),
                  name="hot")
    hot.inputs.seconds, hot.inputs.megabytes = 2.0, 300
    cold = pe.Node(Function(input_names=["seconds"], output_names=["out"], function=idle), name="cold")
    cold.inputs.seconds = 2.0
    wf.add_nodes([hot, cold])
    t0 = time.time()
    with Sampler(interval=0.2) as sampler:
        wf.run(plugin="MultiProc", plugin_args={"n_procs": 2, "mp_context": "forkserver"})
    tsv = write_profile(tmp_path / "log", tmp_path / "w" / "sub_01_wf", t0, sampler)
    rows = {r["stage"]: r for r in read_profile(tsv)}
    assert set(rows) == {"hot", "cold"} and tuple(next(iter(rows.values()))) == COLUMNS
    hot_row, cold_row = rows["hot"], rows["cold"]
    assert float(hot_row["wall_s"]) >= 2.0 and float(cold_row["wall_s"]) >= 2.0
    assert 1.5 <= float(hot_row["cpu_s"]) <= float(hot_row["wall_s"]) + 0.5
    assert float(cold_row["cpu_s"]) < 0.8  # sleeping: (almost) no CPU
    assert float(hot_row["peak_rss_gb"]) > 0.28 > float(cold_row["peak_rss_gb"])
    assert hot_row["status"] == cold_row["status"] == "computed"
    summary = json.loads((tmp_path / "log" / "profile.json").read_text())
    assert summary["nodes_computed"] == 2 and summary["peak_total_rss_gb"] > 0.28
    assert summary["machine"]["cpus"] >= 1
    table = format_table(list(rows.values())).splitlines()
    assert table[0].split()[:3] == ["node", "wall", "s"] and len(table) == 3


def test_bench_pipeline_truncated_copy_cuts_runs_and_events_without_touching_the_source(tmp_path):
    """``bench pipeline --volumes N``: the copy's BOLD keeps the first N volumes (same values and
    affine), its events those starting before N * TR (the sidecar's), and the source is left as it was."""
    import nibabel as nib
    import numpy as np

    from bids_boldsr.bench.pipeline import truncated_copy
    from conftest import make_bids

    data = np.arange(6 * 5 * 4 * 10, dtype=np.int16).reshape(6, 5, 4, 10)
    src = make_bids(tmp_path / "ds", nib.Nifti1Image(data, np.diag([3.0, 3.0, 3.3, 1.0])), sub="01",
                    task="x", tr=2.0)
    bold = next(src.rglob("*_bold.nii.gz"))
    events = bold.with_name(bold.name.replace("_bold.nii.gz", "_events.tsv"))
    events.write_text("onset\tduration\ttrial_type\n1.0\t1\ta\n7.9\t1\tb\n8.0\t1\ta\n15\t1\tb\n")
    before = {p: p.read_bytes() for p in src.rglob("*") if p.is_file()}
    copy = truncated_copy(src, tmp_path / "cut", 4)
    cut = next(copy.rglob("*_bold.nii.gz"))
    assert not cut.is_symlink() and nib.load(cut).shape == (6, 5, 4, 4)
    assert np.array_equal(np.asarray(nib.load(cut).dataobj), data[..., :4])
    assert np.allclose(nib.load(cut).affine, nib.load(bold).affine)
    rows = cut.with_name(cut.name.replace("_bold.nii.gz", "_events.tsv")).read_text().splitlines()
    assert rows == ["onset\tduration\ttrial_type", "1.0\t1\ta", "7.9\t1\tb"]  # 8.0 s is the cut
    assert (copy / "dataset_description.json").is_symlink()
    assert {p: p.read_bytes() for p in src.rglob("*") if p.is_file()} == before
