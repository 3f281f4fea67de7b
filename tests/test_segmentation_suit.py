"""SUIT lobules through the cerebellum-masked template-to-template registration (tpl-SUIT stand-in)."""

import numpy as np

from bids_boldsr import templates
from bids_boldsr.cli.run import main
from bids_boldsr.registration.resample import resample
from bids_boldsr.segmentation.suit import cerebellar_mask, register_to_template, suit_on_template
from conftest import fake_suit, make_bids, suit_home


def _dice(got, truth):
    return 2 * ((got > 0) & (truth > 0)).sum() / ((got > 0).sum() + (truth > 0).sum())


def test_suit_labels_land_on_the_template_cerebellum(template_cache):
    """A warped 'SUIT': the masked affine + SVF recovers the lobules, better than the affine alone
    and far better than trusting the headers."""
    suit_t1w, suit_dseg, t1w, atlas = fake_suit(template_cache, warp_mm=2.5)
    out, stats = suit_on_template(suit_t1w, suit_dseg, t1w, atlas, sloppy=True)
    got, truth = np.asarray(out.dataobj), np.asarray(atlas.dataobj)
    assert out.shape == t1w.shape and np.allclose(out.affine, t1w.affine)
    lobules = np.asarray(suit_dseg.dataobj)

    def pulled(chain):
        return resample(lobules, suit_dseg.affine, t1w.shape, t1w.affine, chain, order=0)

    affine = register_to_template(suit_t1w, t1w, cerebellar_mask(atlas), dof=12, sloppy=True)
    scores = {"headers": _dice(pulled([]), truth), "affine": _dice(pulled([affine]), truth),
              "svf": _dice(got, truth)}
    per_label = [2 * ((got == i) & (truth == i)).sum() / ((got == i).sum() + (truth == i).sum())
                 for i in range(1, 27) if (truth == i).sum() > 50]
    assert scores["svf"] > 0.93 and scores["svf"] > scores["affine"] + 0.01 and scores["headers"] < 0.8, scores
    assert np.median(per_label) > 0.85, per_label
    assert stats["lncc_after"] > stats["lncc_before"] and stats["jacobian_negative_fraction"] < 1e-3


def test_suit_files_from_templateflow_home(tmp_path, template_cache, monkeypatch):
    home = suit_home(tmp_path / "tf", template_cache)
    monkeypatch.setenv("TEMPLATEFLOW_HOME", str(home))
    files = templates.suit_files(template_cache)
    assert files["t1w"].name == "tpl-SUIT_T1w.nii.gz"  # TemplateFlow's names (no res- entity)
    assert files["dseg"].name == "tpl-SUIT_atlas-Diedrichsen2009_dseg.nii.gz"
    assert files["tsv"].name == "tpl-SUIT_atlas-Diedrichsen2009_dseg.tsv"


def test_suit_missing_is_one_line_error(tmp_path, template_cache, monkeypatch, capsys):
    import nibabel as nib

    monkeypatch.setenv("TEMPLATEFLOW_HOME", str(tmp_path / "empty_tf"))
    bold = nib.Nifti1Image(np.random.default_rng(0).normal(500, 5, (8, 8, 6, 4)).astype(np.float32),
                           np.diag([3, 3, 3, 1.0]))
    ds = make_bids(tmp_path / "ds", bold)
    code = main([str(ds), str(tmp_path / "out"), "participant", "-w", str(template_cache),
                 "--cerebellar-atlas", "SUIT"])
    err = [line for line in capsys.readouterr().err.splitlines() if not line.startswith("Downloading")]
    assert code == 66 and len(err) == 1 and "SUIT" in err[0] and "TEMPLATEFLOW_HOME" in err[0], err
