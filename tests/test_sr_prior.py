"""The learned SR prior: synthetic training pairs, seeded training, the shipped weights' checks,
and tvsr's ``prior`` variant starting from them."""
import json

import nibabel as nib
import numpy as np
import pytest
import torch

from conftest import shared
from bids_boldsr.segmentation.synth import load_label_map
from bids_boldsr.segmentation.train import state_sha256
from bids_boldsr.sr.grid import sr_target_grid
from bids_boldsr.sr.tvsr import load_tvsr, train_tvsr, tvsr_metadata
from bids_boldsr.sr.tvsr.acquisition import coarse_shape_for
from bids_boldsr.sr.tvsr.infer import run_super_resolver
from bids_boldsr.sr.tvsr.model import PRIOR_NET, ResidualCNN
from bids_boldsr.sr.tvsr.synth_epi import HEAD_MM, HR_MM, degrade, synth_hr_epi
from bids_boldsr.sr.tvsr.train import PRIOR_WEIGHTS, load_prior
from bids_boldsr.sr.tvsr.train_prior import main as train_prior_main


def test_synthetic_pairs_are_seeded_and_on_bold_grids():
    lm = load_label_map(shared("labelmaps", "training_seg_02.nii.gz"))
    hr = synth_hr_epi(lm, torch.Generator().manual_seed(5))
    assert np.array_equal(hr, synth_hr_epi(lm, torch.Generator().manual_seed(5)))
    for n, fov in zip(hr.shape, HEAD_MM):  # a head's field of view at 2.5-3.5 mm voxels
        assert fov / HR_MM[1] - 1 <= n <= fov / HR_MM[0] + 1
    assert np.percentile(hr, 99) == pytest.approx(1.0, abs=1e-3) and hr.dtype == np.float32
    inp, lr, scale, psf = degrade(hr, torch.Generator().manual_seed(1), factor=2.0)
    assert inp.shape == hr.shape and lr.shape == coarse_shape_for(hr.shape, 2.0)
    assert np.percentile(lr, 99) == pytest.approx(1.0, abs=1e-3)
    assert psf.inplane in ("box", "kspace") and psf.profile in ("box", "gaussian")
    # the PSF blurs: the LR input has less high-frequency energy than the HR it came from
    assert np.abs(np.diff(inp, axis=0)).mean() < np.abs(np.diff(hr / scale, axis=0)).mean()


def test_seeded_training_reproduces_weights_and_the_record_guards_them(tmp_path):
    maps = tmp_path / "maps"
    maps.mkdir()
    for n in ("01", "13"):  # 13 is held out: validation only
        (maps / f"training_seg_{n}.nii.gz").symlink_to(shared("labelmaps", f"training_seg_{n}.nii.gz"))
    records = []
    for run in ("a", "b"):
        assert train_prior_main(["--labelmaps", str(maps), "--out", str(tmp_path / run), "--steps", "3",
                                 "--pool", "2", "--batch", "2", "--workers", "0", "--val-every", "3"]) == 0
        records.append(json.loads((tmp_path / run / "tvsr_prior.json").read_text()))
    assert records[0]["weights_sha256"] == records[1]["weights_sha256"]
    assert records[0]["training_data"] == ["training_seg_01.nii.gz"] and records[0]["steps"] == 3
    assert [c["step"] for c in records[0]["curve"]] == [0, 3]
    prior = load_prior(tmp_path / "a" / "tvsr_prior.pt")
    assert prior["sha256"] == records[0]["weights_sha256"] and prior["config"] == PRIOR_NET
    record = tmp_path / "a" / "tvsr_prior.json"
    record.write_text(json.dumps({**records[0], "weights_sha256": "0" * 64}))
    with pytest.raises(ValueError, match="do not match their record"):
        load_prior(tmp_path / "a" / "tvsr_prior.pt")
    with pytest.raises(FileNotFoundError, match="SR prior weights not found"):
        load_prior(tmp_path / "missing.pt")


def _fake_prior(path):
    """Seeded random weights in the shipped format, with their record."""
    torch.manual_seed(0)
    net = ResidualCNN(1, **PRIOR_NET, zero_init=False)
    torch.save({"state_dict": net.state_dict(), "config": PRIOR_NET}, path)
    path.with_suffix(".json").write_text(json.dumps({"weights_sha256": state_sha256(net.state_dict())}))
    return net


@pytest.fixture(scope="module")
def lr_run(tmp_path_factory):
    img = nib.load(shared("ds-xa30", "sub-01", "func", "sub-01_task-fa_run-1_bold.nii.gz"))
    data = np.asarray(img.dataobj[..., :4], np.float32)[::2, ::2, ::2]
    affine = img.affine @ np.diag([2, 2, 2, 1])
    path = tmp_path_factory.mktemp("lr") / "sub-01_task-fa_bold.nii.gz"
    nib.save(nib.Nifti1Image(data, affine), path)
    return path


def test_prior_variant_starts_from_the_prior_and_fine_tunes(lr_run, tmp_path):
    net = _fake_prior(tmp_path / "prior.pt")
    as_shipped = train_tvsr([lr_run], factor=2, variant="prior", init=str(tmp_path / "prior.pt"),
                            sloppy=True, out_dir=tmp_path / "a")
    ckpt = torch.load(as_shipped, weights_only=False)
    assert ckpt["training"]["steps_run"] == 0  # sloppy never adds steps to the prior's 0
    for name, value in net.state_dict().items():
        assert torch.equal(ckpt["state_dict"][name], value)
    meta = tvsr_metadata(as_shipped)
    assert meta["PriorWeightsSHA256"] == state_sha256(net.state_dict())
    assert meta["Variant"] == "prior" and meta["DataConsistencyIterations"] == 50
    assert meta["DataConsistencyPSF"] == "estimate" and meta["FlipEnsemble"] == 1  # sloppy: one pass
    tuned = torch.load(train_tvsr([lr_run], factor=2, variant="prior", init=str(tmp_path / "prior.pt"),
                                  out_dir=tmp_path / "b", steps=4, val_every=2, max_volumes=4),
                       weights_only=False)
    assert tuned["training"]["steps_run"] == 4 and [s for s, _ in tuned["training"]["history"]] == [0, 2, 4]
    assert tuned["config"]["hyper"]["psf"] == "family" and tuned["config"]["hyper"]["flip_ensemble"] == 8
    # the static temporal model runs on it: the SR grid, finite values
    img = nib.load(lr_run)
    data = np.asarray(img.dataobj, np.float32)
    run = run_super_resolver(load_tvsr(as_shipped, "cpu"), data.mean(-1))
    assert run.provenance == {}  # nothing estimated before the first volume
    out = run(data[..., 0], img.affine)
    assert out.shape == tuple(sr_target_grid(data.shape[:3], img.affine, factor=2)[0])
    assert np.isfinite(out).all()
    chosen = run.provenance["EstimatedAcquisitionModel"]  # the run's PSF, kept for the sidecar
    least = {k: v for k, v in run.provenance["AcquisitionModelCandidates"][0].items() if k != "residual"}
    calibration = run.provenance["AcquisitionModelCalibration"]  # 8 best candidates simulated
    assert calibration["least_residual"] == least and calibration["chosen"] == chosen
    assert len(calibration["simulated"]) == 8 and calibration["simulated"][0] == least
    assert chosen in calibration["simulated"]
    assert run.provenance["AcquisitionModelCandidatesTried"] > 50


@pytest.mark.skipif(not PRIOR_WEIGHTS.exists(), reason="no shipped prior weights")
def test_shipped_prior_matches_its_record_and_size():
    prior = load_prior("prior")
    record = json.loads(PRIOR_WEIGHTS.with_suffix(".json").read_text())
    assert prior["sha256"] == record["weights_sha256"] and record["held_out"] == ["13", "14"]
    assert PRIOR_WEIGHTS.stat().st_size < 1_000_000
