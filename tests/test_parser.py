import pytest

from bids_boldsr.cli.parser import parse_args
from bids_boldsr.errors import BoldSRError, UsageError


def test_defaults_and_label_prefix():
    opts = parse_args(["/d", "/o", "participant", "--participant-label", "sub-01", "02"])
    assert opts.participant_label == ["01", "02"]
    assert opts.sr_factor == 2.0 and opts.sr_voxel_size is None
    assert opts.output_spaces.strings() == ["bold", "MNI152NLin2009aSym"]
    assert opts.device == "auto" and opts.sr_method == "tvsr-prior"


def test_non_integer_factor_and_spaces():
    opts = parse_args(["/d", "/o", "participant", "--sr-factor", "1.5",
                       "--output-spaces", "MNI152NLin2009cAsym:res-2", "bold"])
    assert opts.sr_factor == 1.5
    assert opts.output_spaces.strings() == ["MNI152NLin2009cAsym:res-2", "bold"]


def test_svf_finest_level():
    assert parse_args(["/d", "/o", "participant"]).svf_finest_mm is None  # the images decide
    assert parse_args(["/d", "/o", "participant", "--svf-finest-mm", "1.5"]).svf_finest_mm == 1.5


def test_unknown_level_exit_17():
    with pytest.raises(BoldSRError) as err:
        parse_args(["/d", "/o", "session"])
    assert err.value.code == 17 and "unknown analysis level" in str(err.value)


@pytest.mark.parametrize("argv", [
    ["/d", "/o", "participant", "--sr-factor", "-2"],
    ["/d", "/o", "participant", "--sr-factor", "2", "--sr-voxel-size", "1.5"],
    ["/d", "/o", "participant", "--output-spaces", "bold:res-2"],
    ["/d", "/o", "participant", "--sr-method", "magic"],
    ["/d", "/o", "participant", "--svf-finest-mm", "0.5"],
    ["/d", "/o", "participant", "--svf-finest-mm", "fine"],
    ["/d", "/o"],
])
def test_usage_errors_exit_64(argv):
    with pytest.raises(UsageError) as err:
        parse_args(argv)
    assert err.value.code == 64


def test_filter_file(tmp_path):
    f = tmp_path / "f.json"
    f.write_text('{"bold": {"run": 1}}')
    assert parse_args(["/d", "/o", "participant", "--bids-filter-file", str(f)]).bids_filters == {
        "bold": {"run": 1}}
    f.write_text('{"dwi": {}}')
    with pytest.raises(UsageError, match="unknown queries"):
        parse_args(["/d", "/o", "participant", "--bids-filter-file", str(f)])
    with pytest.raises(BoldSRError) as err:
        parse_args(["/d", "/o", "participant", "--bids-filter-file", str(tmp_path / "none.json")])
    assert err.value.code == 66
