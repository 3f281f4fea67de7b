"""The workflow graph: nodes, connections and derivative names, built without running."""
from pathlib import Path

import nibabel as nib
import numpy as np

from bids_boldsr import bids
from bids_boldsr.config import Config
from bids_boldsr.spaces import resolve
from bids_boldsr.workflows.base import init_bids_boldsr_wf
from conftest import make_bids


def _build(tmp_path, template_cache, with_t1w, spaces=("bold", "MNI152NLin2009aSym"), **options):
    rng = np.random.default_rng(0)
    bold = nib.Nifti1Image(rng.normal(500, 5, (8, 8, 6, 4)).astype(np.float32), np.diag([3, 3, 3, 1.0]))
    t1w = nib.Nifti1Image(np.ones((10, 10, 10), np.float32), np.eye(4)) if with_t1w else None
    ds = make_bids(tmp_path / "ds", bold, t1w)
    cfg = Config.create(bids_dir=ds, output_dir=tmp_path / "out", work_dir=template_cache,
                        analysis_level="participant", output_spaces=spaces, sloppy=True, **options)
    layout = bids.load_layout(cfg.bids_dir, tmp_path / "w")
    data = {"01": bids.collect_data(layout, "01")}
    spaces = resolve(cfg.output_spaces, cfg.work_dir, cfg.sloppy, cfg.cerebellar_atlas)
    wf = init_bids_boldsr_wf(cfg, data, spaces, "cpu", {"01": cfg.to_json(tmp_path / "c.json")})
    return wf, cfg


def _nodes(graph):
    return {n.fullname.split(".", 1)[1]: n for n in graph.nodes()}


def test_graph_with_t1w(tmp_path, template_cache):
    wf, cfg = _build(tmp_path, template_cache, with_t1w=True)
    graph = wf._create_flat_graph()
    nodes = _nodes(graph)
    run = "sub_01_wf.bold_sub_01_task_rest_wf"
    for name in ("boldref", "hmc", "coreg", "super_resolve", "cerebellum_dseg",
                 "to_MNI152NLin2009aSym", "qc"):
        assert f"{run}.{name}" in nodes, name
    assert "sub_01_wf.t1w_to_MNI152NLin2009aSym" in nodes
    assert nodes["sub_01_wf.t1w_to_MNI152NLin2009aSym"].inputs.dof == 12
    assert nodes[f"{run}.coreg"].inputs.dof == 6
    sinks = {Path(n.inputs.out_path).name for k, n in nodes.items() if ".ds_" in k}
    assert "sub-01_task-rest_desc-sr_bold.nii.gz" in sinks
    assert "sub-01_task-rest_space-MNI152NLin2009aSym_desc-sr_bold.nii.gz" in sinks
    assert "sub-01_task-rest_from-boldref_to-T1w_mode-image_xfm.txt" in sinks
    # T1w -> template: affine then SVF, written as ITK composites both ways plus the pieces
    assert nodes["sub_01_wf.t1w_to_MNI152NLin2009aSym_nonlinear"].inputs.method == "svf"
    for name in ("from-T1w_to-MNI152NLin2009aSym_mode-image_xfm.h5",
                 "from-MNI152NLin2009aSym_to-T1w_mode-image_xfm.h5",
                 "from-T1w_to-MNI152NLin2009aSym_mode-image_desc-affine_xfm.txt",
                 "from-T1w_to-MNI152NLin2009aSym_mode-image_desc-warp_xfm.nii.gz",
                 "from-MNI152NLin2009aSym_to-T1w_mode-image_desc-warp_xfm.nii.gz"):
        assert f"sub-01_{name}" in sinks, name
    assert "sub-01_task-rest_desc-cerebellum_dseg.tsv" in sinks
    assert {"sub-01_desc-cerebellum_dseg.nii.gz", "sub-01_desc-cerebellum_dseg.tsv",
            "sub-01_desc-cerebellum_morph.tsv"} <= sinks  # T1w space
    # the atlas reaches native space through the explicit inverse chain, not an inverted matrix
    inv = nodes[f"{run}.inverse_chain_MNI152NLin2009aSym"]
    feeds = {(u.name, c) for u, v, data in graph.in_edges(inv, data=True) for c in data["connect"]}
    assert feeds == {("coreg", ("inverse_xfm_file", "in1")),
                     ("inputnode", ("MNI152NLin2009aSym_to_t1w_xfm", "in2"))}
    # coregistration runs on the super-resolved reference
    coreg = nodes[f"{run}.coreg"]
    feeds = {(u.name, c) for u, v, data in graph.in_edges(coreg, data=True) for c in data["connect"]}
    assert ("sr_boldref", ("out_file", "moving_file")) in feeds
    # single interpolation: template resampling takes the chain and head motion together
    to_tpl = nodes[f"{run}.to_MNI152NLin2009aSym"]
    feeds = {d for u, v, data in graph.in_edges(to_tpl, data=True) for _, d in data["connect"]}
    assert feeds == {"bold_file", "ref_file", "xfm_files", "hmc_file"}
    # cerebellum (default --cerebellum cnn): the CNN runs on the SR reference, the atlas lobules are
    # kept inside it, and that is what the time series, QC, figure and dseg sink read
    cnn = nodes[f"{run}.cerebellum_cnn"]
    feeds = {(u.name, c) for u, v, data in graph.in_edges(cnn, data=True) for c in data["connect"]}
    assert feeds == {("sr_boldref", ("out_file", "in_file")), ("cerebellum_dseg", ("out_file", "atlas_file")),
                     ("inputnode", ("atlas_file", "template_atlas")),
                     ("chain_MNI152NLin2009aSym", ("out", "xfm_files"))}
    for reader, field in (("cerebellum_summaries", "dseg_file"), ("qc", "dseg_file"),
                          ("ds_dseg", "in_file")):
        feeds = {(u.name, c) for u, v, data in graph.in_edges(nodes[f"{run}.{reader}"], data=True)
                 for c in data["connect"]}
        assert ("cerebellum_cnn", ("lobules_file", field)) in feeds, reader
    assert {"sub-01_task-rest_desc-cerebellumtissue_dseg.nii.gz", "sub-01_task-rest_desc-cerebellumtissue_dseg.tsv",
            "sub-01_task-rest_desc-cerebellumtissue_morph.tsv", "sub-01_desc-cerebellumtissue_dseg.nii.gz",
            "sub-01_desc-cerebellumtissue_morph.tsv"} <= sinks
    assert nodes["sub_01_wf.t1w_cerebellum_cnn"].inputs.in_file.endswith("_T1w.nii.gz")


def test_graph_atlas_cerebellum(tmp_path, template_cache):
    wf, _ = _build(tmp_path, template_cache, with_t1w=True, cerebellum="atlas")
    graph = wf._create_flat_graph()
    nodes = _nodes(graph)
    run = "sub_01_wf.bold_sub_01_task_rest_wf"
    assert not any(k.endswith("cerebellum_cnn") for k in nodes)
    feeds = {(u.name, c) for u, v, data in graph.in_edges(nodes[f"{run}.cerebellum_summaries"], data=True)
             for c in data["connect"]}
    assert ("cerebellum_dseg", ("out_file", "dseg_file")) in feeds
    sinks = {Path(n.inputs.out_path).name for k, n in nodes.items() if ".ds_" in k}
    assert not any("cerebellumtissue" in s for s in sinks)


def test_graph_svf_finest_level(tmp_path, template_cache):
    """--svf-finest-mm reaches the SVF node; unset, the node derives it from the images (0)."""
    wf, _ = _build(tmp_path, template_cache, with_t1w=True, svf_finest_mm=1.5)
    node = _nodes(wf._create_flat_graph())["sub_01_wf.t1w_to_MNI152NLin2009aSym_nonlinear"]
    assert node.inputs.finest_mm == 1.5
    wf, _ = _build(tmp_path / "default", template_cache, with_t1w=True)
    assert _nodes(wf._create_flat_graph())["sub_01_wf.t1w_to_MNI152NLin2009aSym_nonlinear"].inputs.finest_mm == 0


def test_graph_affine_only(tmp_path, template_cache):
    wf, _ = _build(tmp_path, template_cache, with_t1w=True, registration="affine")
    nodes = _nodes(wf._create_flat_graph())
    assert "sub_01_wf.t1w_to_MNI152NLin2009aSym_nonlinear" not in nodes
    sinks = {Path(n.inputs.out_path).name for k, n in nodes.items() if ".ds_" in k}
    assert "sub-01_from-T1w_to-MNI152NLin2009aSym_mode-image_xfm.txt" in sinks
    assert not any(s.endswith(".h5") for s in sinks)


def test_graph_bold_only_and_res(tmp_path, template_cache):
    wf, _ = _build(tmp_path, template_cache, with_t1w=False,
                   spaces=("MNI152NLin2009aSym:res-2",))
    nodes = _nodes(wf._create_flat_graph())
    assert "sub_01_wf.t1w_to_MNI152NLin2009aSym" not in nodes
    run = "sub_01_wf.bold_sub_01_task_rest_wf"
    assert f"{run}.coreg" not in nodes
    assert nodes[f"{run}.boldref_to_MNI152NLin2009aSym"].inputs.dof == 12
    sinks = {Path(n.inputs.out_path).name for k, n in nodes.items() if ".ds_" in k}
    # no T1w: affine only (a warp of the EPI reference stretched clipped slabs, see the docs)
    assert not any(k.endswith("_nonlinear") for k in nodes)
    assert "sub-01_task-rest_from-boldref_to-MNI152NLin2009aSym_mode-image_xfm.txt" in sinks
    assert "sub-01_task-rest_space-MNI152NLin2009aSym_res-2_desc-sr_bold.nii.gz" in sinks


def test_graph_suit_atlas(tmp_path, template_cache, monkeypatch):
    """--cerebellar-atlas SUIT: one cerebellum-masked registration of tpl-SUIT feeds the T1w and
    every run; the lookup table is SUIT's."""
    from conftest import suit_home

    monkeypatch.setenv("TEMPLATEFLOW_HOME", str(suit_home(tmp_path / "tf", template_cache)))
    wf, _ = _build(tmp_path, template_cache, with_t1w=True, cerebellar_atlas="SUIT")
    graph = wf._create_flat_graph()
    nodes = _nodes(graph)
    suit = nodes["sub_01_wf.suit_to_template"]
    assert suit.inputs.suit_dseg.endswith("tpl-SUIT_atlas-Diedrichsen2009_dseg.nii.gz")
    readers = {(v.fullname.split(".", 1)[1], c) for _, v, data in graph.out_edges(suit, data=True)
               for c in data["connect"]}
    assert readers == {("sub_01_wf.t1w_cerebellum_dseg", ("out_file", "in_file")),
                       ("sub_01_wf.t1w_cerebellum_cnn", ("out_file", "template_atlas")),
                       ("sub_01_wf.bold_sub_01_task_rest_wf.inputnode", ("out_file", "atlas_file"))}
    atlas = nodes["sub_01_wf.bold_sub_01_task_rest_wf.cerebellum_dseg"]
    feeds = {(u.name, c) for u, v, data in graph.in_edges(atlas, data=True) for c in data["connect"]}
    assert ("inputnode", ("atlas_file", "in_file")) in feeds
    tsv = nodes["sub_01_wf.bold_sub_01_task_rest_wf.ds_dseg_tsv"].inputs.in_file
    assert tsv.endswith("tpl-SUIT_atlas-Diedrichsen2009_dseg.tsv")
    meta = nodes["sub_01_wf.bold_sub_01_task_rest_wf.ds_dseg"].inputs.metadata
    assert meta["Atlas"].startswith("SUIT atlas-Diedrichsen2009")


def test_heavy_steps_declare_the_threads_per_step(tmp_path, template_cache):
    """--omp-nthreads reaches the heavy steps as their n_procs (and so their threads); the rest take one."""
    wf, cfg = _build(tmp_path, template_cache, with_t1w=True, nprocs=4, omp_nthreads=3)
    nodes = _nodes(wf._create_flat_graph())
    run = "sub_01_wf.bold_sub_01_task_rest_wf"
    heavy = [f"{run}.{n}" for n in ("hmc", "super_resolve", "sr_boldref", "coreg", "cerebellum_cnn")] + [
        "sub_01_wf.t1w_to_MNI152NLin2009aSym", "sub_01_wf.t1w_to_MNI152NLin2009aSym_nonlinear",
        "sub_01_wf.t1w_cerebellum_cnn"]
    for name in heavy:
        assert nodes[name].n_procs == 3 and nodes[name].inputs.num_threads == 3, name
    assert nodes[f"{run}.qc"].n_procs == 1 and nodes[f"{run}.qc"].inputs.num_threads == 1
    assert nodes[f"{run}.to_MNI152NLin2009aSym"].n_procs == 4  # resampling takes every process
