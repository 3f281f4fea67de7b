"""No silent value loss: the stored series keeps every volume's range (issue 15).

The int16 scale used to come from volume 0 alone (1.5x head-room), so a later volume 3x brighter
was clipped to ~1.5x without a word. These tests put a 3x brighter copy of a real volume (ds-xa30)
at the end of the run and check that it comes out 3x brighter, in the native SR series and in the
resampled (template-space) series."""
import nibabel as nib
import numpy as np
import pytest

from bids_boldsr.nifti import Int16Overflow, StreamingNiftiWriter, load_series, write_series
from conftest import shared


@pytest.fixture(scope="module")
def bright_last(tmp_path_factory):
    """4 real volumes of ds-xa30 plus a 5th = 3 x volume 0."""
    src = nib.load(shared("ds-xa30", "sub-01/func/sub-01_task-fa_run-1_bold.nii.gz"))
    data = np.asarray(src.dataobj[..., :4], dtype=np.float32)
    data = np.concatenate([data, 3 * data[..., :1]], axis=3)
    path = tmp_path_factory.mktemp("bright") / "bold.nii.gz"
    nib.save(nib.Nifti1Image(data, src.affine, src.header), path)
    return path, data


def _ratio(out_file):
    img = load_series(out_file)
    first = np.asarray(img.dataobj[..., 0], dtype=np.float64)
    last = np.asarray(img.dataobj[..., 4], dtype=np.float64)
    brain = first > np.percentile(first, 90)
    return img, float(np.median(last[brain] / first[brain])), np.abs(last - 3 * first).max() / first.max()


def test_sr_series_keeps_a_late_bright_volume(bright_last, tmp_path):
    from bids_boldsr.sr.apply import super_resolve_bold

    path, _ = bright_last
    out = tmp_path / "sr.nii.gz"
    super_resolve_bold(path, out, method="trilinear", factor=2, progress=False)
    img, ratio, err = _ratio(out)
    assert img.shape == (128, 128, 66, 5) and img.get_data_dtype() == np.int16
    assert ratio == pytest.approx(3.0, rel=1e-3)  # was 1.56 with the scale of volume 0
    assert err < 1e-3


def test_resampled_series_keeps_a_late_bright_volume(bright_last, tmp_path):
    from bids_boldsr.registration.apply import resample_series

    path, data = bright_last
    src = nib.load(path)
    out = tmp_path / "res.nii.gz"
    resample_series(path, out, data.shape[:3], src.affine, order=1, progress=False)
    img, ratio, err = _ratio(out)
    assert ratio == pytest.approx(3.0, rel=1e-3) and err < 1e-3
    step = 1.5 * data.max() / 32000  # the int16 step for the whole series' range
    inner = (slice(1, -1),) * 3  # the outermost voxels fall just outside in float32 (cval 0)
    assert np.abs(np.asarray(img.dataobj[..., 4])[inner] - data[inner + (4,)]).max() <= step


def test_overshoot_beyond_headroom_is_stored_as_float32(tmp_path):
    """A volume beyond the 1.5x head-room of the series' range: float32, every value exact."""
    vols = [np.full((4, 4, 3), 100.0, np.float32), np.full((4, 4, 3), 400.0, np.float32)]
    vols[1][0, 0, 0] = -1234.5
    out = tmp_path / "x.nii.gz"
    dtype = write_series(out, (4, 4, 3, 2), np.eye(4), None, lambda t: vols[t], max_abs=100.0)
    img = nib.load(out)
    assert dtype is np.float32 and img.get_data_dtype() == np.float32
    assert np.array_equal(img.get_fdata(dtype=np.float32), np.stack(vols, -1))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.nii.gz"]  # no temporary left


def test_int16_writer_refuses_to_clip(tmp_path):
    out = tmp_path / "y.nii.gz"
    with pytest.raises(Int16Overflow):
        with StreamingNiftiWriter(out, (2, 2, 2, 1), np.eye(4), dtype=np.int16, scale=0.01) as w:
            w.write_volume(np.full((2, 2, 2), 1000.0))  # 1000 / 0.01 > 32767
    assert list(tmp_path.iterdir()) == []  # nothing half-written


def test_series_max_abs_is_the_largest_finite_magnitude():
    """The int16 scale's input: the largest |value| over all volumes, ignoring NaN and +-inf
    (an all-NaN volume counts as nothing), equal to series_stats' value."""
    from bids_boldsr.nifti import series_max_abs, series_stats

    data = np.random.default_rng(5).normal(0, 10, (4, 5, 6, 4)).astype(np.float32)
    data[1, 1, 1, 1] = -321.5  # the largest magnitude is negative, in a later volume
    data[0, 0, 0, 2], data[2, 2, 2, 2] = np.inf, np.nan
    data[..., 3] = np.nan
    img = nib.Nifti1Image(data, np.eye(4))
    assert series_max_abs(img) == pytest.approx(321.5)
    assert series_max_abs(img) == pytest.approx(series_stats(img)[0])
