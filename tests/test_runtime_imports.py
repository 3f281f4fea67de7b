"""No runtime import of test-only modules: every module of the package imports, and the sample
dataset is written, in a Python where pytest cannot be imported (as in a user's fresh install)."""
import subprocess
import sys

BLOCK_PYTEST = r"""
import importlib.abc, sys
class _NoTestModules(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("pytest", "_pytest"):
            raise ModuleNotFoundError(f"No module named {name!r} (blocked: test-only)")
        return None
sys.meta_path.insert(0, _NoTestModules())
for mod in [m for m in sys.modules if m.split(".")[0] in ("pytest", "_pytest")]:
    del sys.modules[mod]
"""

IMPORT_ALL = BLOCK_PYTEST + r"""
import importlib, pkgutil, bids_boldsr
names = [m.name for m in pkgutil.walk_packages(bids_boldsr.__path__, "bids_boldsr.")]
for name in names:
    importlib.import_module(name)
assert not [m for m in sys.modules if m.split(".")[0] in ("pytest", "_pytest")]
print(len(names))
"""


def _run(code, *args):
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          timeout=600)


def test_every_module_imports_without_pytest():
    proc = _run(IMPORT_ALL)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert int(proc.stdout.strip().splitlines()[-1]) > 50  # the whole package was walked


def test_sample_written_without_pytest(tmp_path):
    import nibabel as nib

    code = BLOCK_PYTEST + "from bids_boldsr.sample import main; sys.exit(main([sys.argv[1]]))"
    proc = _run(code, str(tmp_path / "sample"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    img = nib.load(tmp_path / "sample/sub-01/func/sub-01_task-rest_bold.nii.gz")
    assert img.shape == (128, 96, 24, 2)
    assert (tmp_path / "sample/dataset_description.json").exists()


def test_the_blocker_blocks():
    """The check above can fail: with the blocker, importing pytest is an error."""
    proc = _run(BLOCK_PYTEST + "import pytest")
    assert proc.returncode != 0 and "blocked: test-only" in proc.stderr


def test_scratch_moves_to_the_work_dir_when_tmp_is_not_writable(tmp_path, monkeypatch):
    """Read-only container: no writable TMPDIR or home; temporary files go under the work dir."""
    import os
    import tempfile

    from bids_boldsr.cli.run import _writable_scratch

    monkeypatch.setenv("TMPDIR", str(tmp_path / "missing-tmp"))
    monkeypatch.setenv("HOME", str(tmp_path / "missing-home"))
    monkeypatch.delenv("MPLCONFIGDIR", raising=False)
    monkeypatch.setattr(tempfile, "tempdir", None)
    work = tmp_path / "work"
    _writable_scratch(work)
    try:
        assert os.environ["TMPDIR"] == str(work / ".runtime" / "tmp")
        assert os.environ["MPLCONFIGDIR"] == str(work / ".runtime" / "matplotlib")
        assert tempfile.gettempdir() == str(work / ".runtime" / "tmp")
    finally:
        tempfile.tempdir = None
    # a writable TMPDIR is left alone
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    _writable_scratch(tmp_path / "work2")
    assert os.environ["TMPDIR"] == str(tmp_path)
