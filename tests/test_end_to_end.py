"""Full runs of the command line on real data (sloppy settings), outputs checked on disk."""
import json

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import torch

from bids_boldsr.cli.run import main
from bids_boldsr.sr.tvsr.common import resolve_precision
from conftest import shared


def _crop_bold_only(src_ds, dst, n_volumes=6):
    """A BOLD-only copy of ds-xa30 (no T1w, fewer volumes): the path without anatomy."""
    from conftest import make_bids

    img = nib.load(src_ds / "sub-01/func/sub-01_task-fa_run-1_bold.nii.gz")
    cut = nib.Nifti1Image(np.asarray(img.dataobj[..., :n_volumes]), img.affine, img.header)
    return make_bids(dst, cut, sub="01", task="fa", tr=1.0)


def test_native_sr_bold(xa30_run):
    ds, out, _, _ = xa30_run
    src = nib.load(ds / "sub-01/func/sub-01_task-fa_run-1_bold.nii.gz")
    sr_file = out / "sub-01/func/sub-01_task-fa_run-1_desc-sr_bold.nii.gz"
    sr = nib.load(sr_file)
    assert sr.shape == (128, 128, 66, 20)
    assert np.allclose(sr.header.get_zooms()[:3], (1.6875, 1.6875, 1.7))
    assert sr.header.get_zooms()[3] == pytest.approx(1.0)
    meta = json.loads(sr_file.with_name(sr_file.name.replace(".nii.gz", ".json")).read_text())
    assert meta["RepetitionTime"] == 1.0 and meta["TaskName"] == "fa"
    assert meta["SuperResolutionMethod"] == "tvsr-prior" and meta["SuperResolutionFactor"] == 2.0
    assert len(meta["WeightsSHA256"]) == 64 and meta["Seed"] == 0 and meta["Alpha"] > 0
    assert meta["InputVoxelSize"] == [3.375, 3.375, 3.4]
    # the PSF data consistency used, estimated from this run, with the runners-up (sorted by residual)
    assert meta["DataConsistencyPSF"] == "estimate" and meta["DataConsistencyIterations"] == 50
    assert meta["EstimatedAcquisitionModel"]["inplane"] in ("box", "kspace")
    assert meta["NetworkPrecision"] == resolve_precision("auto", torch.device("cpu"))
    residuals = [c["residual"] for c in meta["AcquisitionModelCandidates"]]
    assert residuals == sorted(residuals) and meta["AcquisitionModelCandidatesTried"] > 50
    # the least residual checked by simulating the 8 best candidates through the prior
    assert meta["PSFCalibrationCandidates"] == 8
    assert meta["AcquisitionModelCalibration"]["chosen"] == meta["EstimatedAcquisitionModel"]
    # the super-resolved volume, averaged back over 2x2x2 blocks, is close to the input
    vol = np.asarray(sr.dataobj[..., 3], dtype=float)
    back = vol.reshape(64, 2, 64, 2, 33, 2).mean(axis=(1, 3, 5))
    orig = np.asarray(src.dataobj[..., 3], dtype=float)
    brain = orig > np.percentile(orig, 60)
    assert np.corrcoef(back[brain], orig[brain])[0, 1] > 0.97


def test_template_space_and_qc(xa30_run):
    ds, out, _, _ = xa30_run
    tpl = nib.load(out / "sub-01/func/sub-01_task-fa_run-1_space-MNI152NLin2009aSym_desc-sr_bold.nii.gz")
    assert tpl.shape[3] == 20
    assert np.allclose(tpl.header.get_zooms()[:3], (1.6875, 1.6875, 1.7))
    qc = pd.read_csv(out / "sub-01/sub-01_qc.tsv", sep="\t")
    # EPI mask vs template: 0.68 before 0.8, when the bright scalp pulled the template over the head;
    # 0.78 with the head atlas as the affine's first stage
    assert qc.loc[0, "dice_brain_mask_MNI152NLin2009aSym"] > 0.72
    assert 0 <= qc.loc[0, "fd_mean"] < 1.0
    assert qc.loc[0, "cerebellum_labels_present"] >= 5
    conf = pd.read_csv(out / "sub-01/func/sub-01_task-fa_run-1_desc-confounds_timeseries.tsv",
                       sep="\t", na_values="n/a")
    assert len(conf) == 20 and {"trans_x", "rot_z", "framewise_displacement"} <= set(conf)
    dseg = nib.load(out / "sub-01/func/sub-01_task-fa_run-1_desc-cerebellum_dseg.nii.gz")
    assert dseg.shape == (128, 128, 66)
    lut = pd.read_csv(out / "sub-01/func/sub-01_task-fa_run-1_desc-cerebellum_dseg.tsv", sep="\t")
    assert set(np.unique(dseg.get_fdata())) - {0} <= set(lut["index"])
    html = (out / "sub-01.html").read_text()
    assert "sub-01_task-fa_run-1" in html and "figures/" in html
    for name in ("dataset_description.json",
                 "sub-01/anat/sub-01_from-T1w_to-MNI152NLin2009aSym_mode-image_desc-affine_xfm.txt",
                 "sub-01/func/sub-01_task-fa_run-1_from-boldref_to-T1w_mode-image_xfm.txt"):
        assert (out / name).is_file(), name
    assert not list(out.rglob("*.part"))
    # the diffeomorphic stage: small, invertible, recorded in QC, readable by nitransforms
    assert qc.loc[0, "template_warp_jacobian_negative_fraction"] < 1e-3
    assert qc.loc[0, "template_warp_lncc_after"] > qc.loc[0, "template_warp_lncc_before"]
    warp = nib.load(out / "sub-01/anat/sub-01_from-T1w_to-MNI152NLin2009aSym_mode-image_desc-warp_xfm.nii.gz")
    assert warp.shape[3:] == (1, 3) and warp.header.get_intent()[0] == "vector"
    assert 0.5 < np.abs(warp.get_fdata()).max() < 30  # mm: a real warp, not identity, not wild
    nitransforms = pytest.importorskip("nitransforms.manip")
    chain = nitransforms.TransformChain.from_filename(
        out / "sub-01/anat/sub-01_from-T1w_to-MNI152NLin2009aSym_mode-image_xfm.h5", fmt="itk")
    assert [type(t).__name__ for t in chain.transforms] == ["DenseFieldTransform", "Affine"]


def test_rerun_reuses_and_group(xa30_run, caplog):
    ds, out, work, argv = xa30_run
    before = sorted(p.name for p in ds.rglob("*"))
    with caplog.at_level("INFO", logger="bids_boldsr"):
        assert main(argv) == 0
    msg = [r.getMessage() for r in caplog.records if "reused" in r.getMessage()][-1]
    assert msg.split("processing step(s) computed")[0].split()[-1] == "0"
    assert main([str(ds), str(out), "group", "-w", str(work)]) == 0
    table = pd.read_csv(out / "group_bold.tsv", sep="\t", dtype={"subject": str})
    assert list(table["run"]) == ["sub-01_task-fa_run-1"]
    assert (out / "group_report.html").is_file()
    assert sorted(p.name for p in ds.rglob("*")) == before  # input dataset untouched


def test_bold_only_dataset(tmp_path):
    ds = _crop_bold_only(shared("ds-xa30"), tmp_path / "ds")
    out = tmp_path / "out"
    assert main([str(ds), str(out), "participant", "-w", str(tmp_path / "w"), "--sloppy",
                 "--sr-factor", "1.5", "--sr-method", "spline", "--output-spaces", "bold",
                 "MNI152NLin2009aSym:res-2"]) == 0
    sr = nib.load(out / "sub-01/func/sub-01_task-fa_desc-sr_bold.nii.gz")
    assert sr.shape == (96, 96, 50, 6)
    tpl = nib.load(out / "sub-01/func/sub-01_task-fa_space-MNI152NLin2009aSym_res-2_desc-sr_bold.nii.gz")
    assert tpl.shape[:3] == (98, 116, 94) and np.allclose(tpl.header.get_zooms()[:3], 2.0)
    assert (out / "sub-01/func/sub-01_task-fa_from-boldref_to-MNI152NLin2009aSym_mode-image_xfm.txt").is_file()
    qc = pd.read_csv(out / "sub-01/sub-01_qc.tsv", sep="\t")
    assert qc.loc[0, "dice_brain_mask_MNI152NLin2009aSym_res-2"] > 0.7


def test_cerebellar_summaries(xa30_run):
    _, out, _, _ = xa30_run
    func = out / "sub-01/func"
    dseg = nib.load(func / "sub-01_task-fa_run-1_desc-cerebellum_dseg.nii.gz")
    lut = pd.read_csv(func / "sub-01_task-fa_run-1_desc-cerebellum_dseg.tsv", sep="\t")
    present = sorted(set(np.unique(np.asarray(dseg.dataobj))) - {0})
    ts = pd.read_csv(func / "sub-01_task-fa_run-1_desc-cerebellum_timeseries.tsv", sep="\t")
    assert list(ts.columns) == [lut.set_index("index").loc[i, "name"] for i in present]
    assert len(ts) == 20 and ts.notna().all().all()
    vols = pd.read_csv(func / "sub-01_task-fa_run-1_desc-cerebellum_morph.tsv", sep="\t")
    assert list(vols["index"]) == present
    assert np.allclose(vols["volume_mm3"], vols["voxels"] * 1.6875 * 1.6875 * 1.7, rtol=1e-4)


def test_learned_cerebellum_outputs(xa30_run):
    """Default --cerebellum cnn: tissue labels on the SR grid and the T1w, lobules only inside them."""
    _, out, _, _ = xa30_run
    func, anat = out / "sub-01/func", out / "sub-01/anat"
    tissue = nib.load(func / "sub-01_task-fa_run-1_desc-cerebellumtissue_dseg.nii.gz")
    lobules = np.asarray(nib.load(func / "sub-01_task-fa_run-1_desc-cerebellum_dseg.nii.gz").dataobj)
    labels = np.asarray(tissue.dataobj)
    assert tissue.shape == (128, 128, 66) and set(np.unique(labels)) == {0, 1, 2, 3, 4}
    assert ((lobules > 0) <= (labels > 0)).all() and (lobules > 0).sum() > 0.95 * (labels > 0).sum()
    lut = pd.read_csv(func / "sub-01_task-fa_run-1_desc-cerebellumtissue_dseg.tsv", sep="\t")
    assert list(lut["index"]) == [1, 2, 3, 4] and list(lut.columns) == ["index", "name", "abbreviation", "color"]
    qc = pd.read_csv(out / "sub-01/sub-01_qc.tsv", sep="\t")
    # the slab starts mid-cerebellum: 68 ml inside it (the T1w holds 146 ml), 0.33 overlap with the
    # larger AAL cerebellum (docs/benchmarks-segmentation.md)
    assert 40 < qc.loc[0, "cerebellum_volume_ml"] < 120
    assert qc.loc[0, "cerebellum_atlas_dice"] > 0.2 and 0.4 < qc.loc[0, "cerebellum_atlas_volume_ratio"] < 1.5
    t1w = nib.load(anat / "sub-01_desc-cerebellumtissue_dseg.nii.gz")
    ml = (np.asarray(t1w.dataobj) > 0).sum() * np.prod(t1w.header.get_zooms()[:3]) / 1000
    assert t1w.shape == nib.load(shared("ds-xa30") / "sub-01/anat/sub-01_T1w.nii.gz").shape and 110 < ml < 180
    vols = pd.read_csv(anat / "sub-01_desc-cerebellumtissue_morph.tsv", sep="\t")
    assert list(vols["name"])[:2] == ["Left-Cerebellum-Cortex", "Left-Cerebellum-White-Matter"]
