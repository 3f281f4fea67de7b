"""The spaces model: parsing, validation with exit codes, resolution to files, one normalisation
per template, and the workflow graph for each space kind."""
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from nipype.interfaces.base import isdefined

from bids_boldsr import bids, templates
from bids_boldsr.config import Config
from bids_boldsr.errors import UsageError
from bids_boldsr.spaces import Reference, SpatialReferences, parse_reference, resolve
from bids_boldsr.workflows.base import init_bids_boldsr_wf
from conftest import MISALIGNED, make_bids, misaligned_template_home


def test_parse_references():
    assert parse_reference("MNI152NLin6Asym:res-2") == Reference("MNI152NLin6Asym", 2)
    ped = parse_reference("MNIPediatricAsym:cohort-2:res-1")
    assert (ped.name, ped.cohort, ped.res) == ("MNIPediatricAsym", "2", 1)
    assert ped.label == "MNIPediatricAsym_cohort-2_res-1" and str(ped) == "MNIPediatricAsym:cohort-2:res-1"
    refs = SpatialReferences.parse(["bold", "T1w", "MNI152NLin2009aSym", "bold", "MNI152NLin6Asym:res-2"])
    assert refs.native and refs.anat
    assert [r.label for r in refs.templates] == ["MNI152NLin2009aSym", "MNI152NLin6Asym_res-2"]
    assert refs.strings() == ["bold", "T1w", "MNI152NLin2009aSym", "MNI152NLin6Asym:res-2"]  # no repeats
    assert SpatialReferences.parse().strings() == ["bold", "MNI152NLin2009aSym"]


@pytest.mark.parametrize("text, message", [
    ("MNI152NLin6Asym:res-x", "res takes a TemplateFlow resolution index"),
    ("MNI152NLin6Asym:res-1:res-2", "once each"),
    ("MNI152NLin6Asym:den-91k", "invalid modifier"),
    ("MNI152NLin6Asym:cohort-", "invalid modifier"),
    ("T1w:res-2", "takes no modifiers"),
    ("bold:res-1", "takes no modifiers"),
    ("MNI-152", "invalid output space"),
])
def test_bad_references_are_usage_errors(text, message):
    with pytest.raises(UsageError, match=message) as err:
        parse_reference(text)
    assert err.value.code == 64


def test_t1w_alone_is_refused():
    with pytest.raises(UsageError, match="request 'bold' and/or a template") as err:
        SpatialReferences.parse(["T1w"])
    assert err.value.code == 64


def test_cli_exit_codes(tmp_path, monkeypatch, capsys):
    """Bad res/cohort: 64; a template missing offline: 66 naming TEMPLATEFLOW_HOME (one line each)."""
    from bids_boldsr.cli.run import main

    rng = np.random.default_rng(0)
    ds = make_bids(tmp_path / "ds", nib.Nifti1Image(rng.normal(500, 5, (8, 8, 6, 4)).astype(np.float32),
                                                    np.diag([3, 3, 3, 1.0])))
    base = [str(ds), str(tmp_path / "out"), "participant", "-w", str(tmp_path / "w"), "--skip-bids-validation"]
    assert main(base + ["--output-spaces", "MNI152NLin6Asym:res-two"]) == 64
    monkeypatch.setenv("TEMPLATEFLOW_HOME", str(tmp_path / "empty_tf"))
    assert main(base + ["--output-spaces", "NoSuchTemplate"]) == 66
    err = capsys.readouterr().err.strip().splitlines()
    assert "res takes a TemplateFlow resolution index" in err[0]
    assert "NoSuchTemplate" in err[-1] and "TEMPLATEFLOW_HOME" in err[-1] and "Traceback" not in "".join(err)


def test_resolve_gives_each_template_its_own_target(tmp_path, template_cache, monkeypatch):
    monkeypatch.setenv("TEMPLATEFLOW_HOME", str(misaligned_template_home(tmp_path / "tf", template_cache)))
    refs = SpatialReferences.parse([f"{MISALIGNED}:res-2", "MNI152NLin2009aSym:res-2", MISALIGNED, "T1w"])
    spaces = resolve(refs, template_cache, sloppy=True)
    # one normalisation per template (both MNIMoved spaces share one), the anchor is the embedded one
    assert [t.key for t in spaces.targets] == ["MNI152NLin2009aSym", MISALIGNED]
    assert spaces.anchor.target.key == "MNI152NLin2009aSym"
    by_label = {s.reference.label: s for s in spaces.templates}
    moved = by_label[f"{MISALIGNED}_res-2"]
    assert moved.target.t1w.name == f"tpl-{MISALIGNED}_res-02_T1w.nii.gz"
    assert moved.target.mask.name == f"tpl-{MISALIGNED}_res-02_desc-brain_mask.nii.gz"
    assert by_label[MISALIGNED].target is moved.target
    assert by_label["MNI152NLin2009aSym_res-2"].target.t1w.name.startswith("tpl-MNI152NLin2009aSym")
    # the moved template really is moved: its mask overlaps the embedded one far less than itself
    a = np.asarray(nib.load(moved.mask).dataobj) > 0
    b = np.asarray(nib.load(by_label["MNI152NLin2009aSym_res-2"].mask).dataobj) > 0
    assert 2 * (a & b).sum() / (a.sum() + b.sum()) < 0.9


def _graph(tmp_path, template_cache, with_t1w, spaces):
    rng = np.random.default_rng(0)
    bold = nib.Nifti1Image(rng.normal(500, 5, (8, 8, 6, 4)).astype(np.float32), np.diag([3, 3, 3, 1.0]))
    t1w = nib.Nifti1Image(np.ones((10, 10, 10), np.float32), np.eye(4)) if with_t1w else None
    ds = make_bids(tmp_path / "ds", bold, t1w)
    cfg = Config.create(bids_dir=ds, output_dir=tmp_path / "out", work_dir=template_cache,
                        analysis_level="participant", output_spaces=spaces, sloppy=True,
                        sr_method="spline", cerebellum="atlas")
    data = {"01": bids.collect_data(bids.load_layout(cfg.bids_dir, tmp_path / "w"), "01")}
    resolved = resolve(cfg.output_spaces, cfg.work_dir, cfg.sloppy)
    wf = init_bids_boldsr_wf(cfg, data, resolved, "cpu", {"01": cfg.to_json(tmp_path / "c.json")})
    graph = wf._create_flat_graph()
    nodes = {n.fullname.split(".", 1)[1]: n for n in graph.nodes()}
    sinks = {Path(n.inputs.out_path).name for k, n in nodes.items() if ".ds_" in k}
    return graph, nodes, sinks


def _feeds(graph, node):
    return {(u.name, c) for u, v, data in graph.in_edges(node, data=True) for c in data["connect"]}


RUN = "sub_01_wf.bold_sub_01_task_rest_wf"


def test_graph_every_space_kind_with_t1w(tmp_path, template_cache, monkeypatch):
    monkeypatch.setenv("TEMPLATEFLOW_HOME", str(misaligned_template_home(tmp_path / "tf", template_cache)))
    graph, nodes, sinks = _graph(tmp_path, template_cache, True, ("MNI152NLin2009aSym", MISALIGNED, "T1w", "bold"))
    # each template has its own T1w registration, fed with that template's image and mask
    moved = nodes[f"sub_01_wf.t1w_to_{MISALIGNED}"]
    assert Path(moved.inputs.fixed_file).name == f"tpl-{MISALIGNED}_res-02_T1w.nii.gz"
    assert Path(moved.inputs.fixed_mask_file).name == f"tpl-{MISALIGNED}_res-02_desc-brain_mask.nii.gz"
    assert f"sub_01_wf.t1w_to_{MISALIGNED}_nonlinear" in nodes
    # the first affine stage matches the head atlas, which lives in the embedded template's world:
    # for another template it is first moved by a brain affine of the embedded template to that one
    embedded = nodes["sub_01_wf.t1w_to_MNI152NLin2009aSym"]
    for node in (embedded, moved):
        assert Path(node.inputs.head_atlas_file) == templates.head_atlas_file()
    assert not isdefined(embedded.inputs.head_atlas_t1w_file)
    assert Path(moved.inputs.head_atlas_t1w_file).name == "tpl-MNI152NLin2009aSym_res-2_T1w.nii.gz"
    assert Path(moved.inputs.head_atlas_mask_file).name == "tpl-MNI152NLin2009aSym_res-2_desc-brain_mask.nii.gz"
    for tpl in ("MNI152NLin2009aSym", MISALIGNED):
        assert {f"sub-01_from-T1w_to-{tpl}_mode-image_xfm.h5", f"sub-01_from-{tpl}_to-T1w_mode-image_xfm.h5",
                f"sub-01_task-rest_space-{tpl}_desc-sr_bold.nii.gz"} <= sinks
        # the run's resampling uses that template's chain: its normalisation, then the coregistration
        assert ("chain_" + tpl, ("out", "xfm_files")) in _feeds(graph, nodes[f"{RUN}.to_{tpl}"])
        assert _feeds(graph, nodes[f"{RUN}.chain_{tpl}"]) == {
            ("inputnode", (f"t1w_to_{tpl}_xfm", "in1")), ("coreg", ("xfm_file", "in2"))}
    # T1w space: coregistration alone, the T1w grid at the SR voxel size, the T1w brain mask
    assert _feeds(graph, nodes[f"{RUN}.to_T1w"]) >= {("coreg", ("xfm_file", "xfm_files")),
                                                     ("grid_T1w", ("grid_file", "ref_file"))}
    assert _feeds(graph, nodes[f"{RUN}.grid_T1w"]) == {
        ("inputnode", ("t1w_file", "template_file")), ("inputnode", ("t1w_mask", "extra_files")),
        ("super_resolve", ("out_file", "voxel_size_from"))}
    assert {"sub-01_task-rest_space-T1w_desc-sr_bold.nii.gz", "sub-01_task-rest_space-T1w_desc-brain_mask.nii.gz",
            "sub-01_task-rest_desc-sr_bold.nii.gz"} <= sinks
    assert nodes[f"{RUN}.qc"].inputs.spaces == ["MNI152NLin2009aSym", MISALIGNED, "T1w"]
    # the cerebellar atlas stays on the embedded template, whatever the output spaces
    assert ("inverse_chain_MNI152NLin2009aSym", ("out", "xfm_files")) in _feeds(graph, nodes[f"{RUN}.cerebellum_dseg"])


def test_graph_embedded_not_requested(tmp_path, template_cache, monkeypatch):
    """Only another template requested: the anchor registration still runs (atlas), but neither its
    transforms nor an embedded-space series are written; without 'bold' no native series."""
    monkeypatch.setenv("TEMPLATEFLOW_HOME", str(misaligned_template_home(tmp_path / "tf", template_cache)))
    graph, nodes, sinks = _graph(tmp_path, template_cache, True, (f"{MISALIGNED}:res-2",))
    assert "sub_01_wf.t1w_to_MNI152NLin2009aSym_nonlinear" in nodes
    assert not any("MNI152NLin2009aSym" in s for s in sinks)
    assert f"sub-01_task-rest_space-{MISALIGNED}_res-2_desc-sr_bold.nii.gz" in sinks
    assert "sub-01_task-rest_desc-sr_bold.nii.gz" not in sinks
    assert "sub-01_task-rest_boldref.nii.gz" in sinks  # the reference and mask stay native outputs
    # QC's warp statistics come from the requested template's registration
    reg = {(u.fullname.split(".", 1)[1], c) for u, v, d in graph.in_edges(nodes[f"{RUN}.inputnode"], data=True)
           for c in d["connect"] if c[1] == "registration_file"}
    assert reg == {(f"sub_01_wf.t1w_to_{MISALIGNED}_nonlinear", ("stats_file", "registration_file"))}


def test_graph_bold_only_each_template(tmp_path, template_cache, monkeypatch):
    monkeypatch.setenv("TEMPLATEFLOW_HOME", str(misaligned_template_home(tmp_path / "tf", template_cache)))
    graph, nodes, sinks = _graph(tmp_path, template_cache, False, ("bold", MISALIGNED, "T1w"))
    moved = nodes[f"{RUN}.boldref_to_{MISALIGNED}"]
    assert moved.inputs.dof == 12 and Path(moved.inputs.fixed_file).name.startswith(f"tpl-{MISALIGNED}")
    assert ("boldref_to_" + MISALIGNED, ("xfm_file", "xfm_files")) in _feeds(graph, nodes[f"{RUN}.to_{MISALIGNED}"])
    assert f"sub-01_task-rest_from-boldref_to-{MISALIGNED}_mode-image_xfm.txt" in sinks
    assert not any("space-T1w" in s for s in sinks)  # no T1w: no T1w space
    assert "sub-01_task-rest_from-boldref_to-MNI152NLin2009aSym_mode-image_xfm.txt" not in sinks
