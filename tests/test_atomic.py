"""Outputs are written to temporary names and renamed (issue 15): parallel participants never
see a half-written dataset_description.json/.bidsignore, a full disk leaves nothing behind, and
the temporaries of a killed run are cleared by the next one."""
from __future__ import annotations

import errno
import json
import multiprocessing as mp

import nibabel as nib
import numpy as np
import pytest

from bids_boldsr.atomic import atomic_copy, atomic_save_nifti, atomic_write_text, remove_stale_temporaries
from bids_boldsr.nifti import StreamingNiftiWriter
from fsutil import tmpfs


def _writer(out, bids_dir, n):
    from bids_boldsr.bids import write_dataset_description

    for _ in range(n):
        write_dataset_description(out, bids_dir, container="docker")


def _reader(out, n, bad):
    for _ in range(n):
        for name in ("dataset_description.json", ".bidsignore"):
            try:
                text = (out / name).read_text()
            except FileNotFoundError:
                continue
            if name.endswith(".json"):
                try:
                    json.loads(text)
                except json.JSONDecodeError:
                    bad.value += 1
            elif not text.endswith("\n") or "sub-*/log/" not in text:
                bad.value += 1


def test_dataset_files_under_concurrent_participants(tmp_path):
    """Six processes rewrite the dataset-level files 150 times each while two read them."""
    (tmp_path / "ds").mkdir()
    out = tmp_path / "out"
    out.mkdir()
    ctx = mp.get_context("spawn")
    bad = ctx.Value("i", 0)
    procs = [ctx.Process(target=_writer, args=(out, tmp_path / "ds", 150)) for _ in range(6)]
    procs += [ctx.Process(target=_reader, args=(out, 600, bad)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0] * 8
    assert bad.value == 0
    assert json.loads((out / "dataset_description.json").read_text())["DatasetType"] == "derivative"
    assert sorted(p.name for p in out.iterdir()) == [".bidsignore", "dataset_description.json"]


def _big_image():
    rng = np.random.default_rng(0)
    return nib.Nifti1Image(rng.normal(size=(64, 64, 64)).astype(np.float32), np.eye(4))


def test_full_disk_leaves_nothing_half_written(tmp_path):
    """A real 256 KiB file system: every atomic writer fails with ENOSPC and leaves no file."""
    src = tmp_path / "big.nii.gz"
    nib.save(_big_image(), src)
    with tmpfs(tmp_path / "full", size="256k") as full:
        attempts = {
            "nifti": lambda: atomic_save_nifti(_big_image(), full / "a.nii.gz"),
            "copy": lambda: atomic_copy(src, full / "b.nii.gz"),
            "text": lambda: atomic_write_text(full / "c.tsv", "x" * 2 ** 20),
        }
        for name, attempt in attempts.items():
            with pytest.raises(OSError) as exc:
                attempt()
            assert exc.value.errno == errno.ENOSPC, name
            assert list(full.iterdir()) == [], name
        for name in ("d.nii", "e.nii.gz"):  # gzip: the last bytes fail at close
            rng = np.random.default_rng(1)
            with pytest.raises(OSError) as exc:
                with StreamingNiftiWriter(full / name, (64, 64, 16, 4), np.eye(4)) as w:
                    for _ in range(4):
                        w.write_volume(rng.normal(size=(64, 64, 16)).astype(np.float32))
            assert exc.value.errno == errno.ENOSPC and list(full.iterdir()) == [], name


def test_stale_temporaries_removed(tmp_path):
    func = tmp_path / "sub-01" / "func"
    func.mkdir(parents=True)
    (func / ".sub-01_bold.nii.gz.ab12.part.nii.gz").write_bytes(b"half")
    (func / ".sub-01_qc.tsv.x9.part").write_text("half")
    (func / "sub-01_bold.nii.gz").write_bytes(b"whole")
    assert remove_stale_temporaries(tmp_path / "sub-01") == 2
    assert [p.name for p in func.iterdir()] == ["sub-01_bold.nii.gz"]


def test_streamed_gzip_is_byte_reproducible(tmp_path):
    """Same data, another file name, process and second: the same bytes (the gzip header holds
    neither a name nor a time), so two runs with the same seed give identical checksums."""
    import time

    rng = np.random.default_rng(3)
    vols = rng.normal(size=(2, 8, 8, 4)).astype(np.float32)
    blobs = []
    for name in ("a.nii.gz", "b.nii.gz"):
        with StreamingNiftiWriter(tmp_path / name, (8, 8, 4, 2), np.eye(4), dtype=np.int16, scale=1e-3) as w:
            for v in vols:
                w.write_volume(v)
        blobs.append((tmp_path / name).read_bytes())
        time.sleep(1.1)
    assert blobs[0] == blobs[1]
    assert np.allclose(nib.load(tmp_path / "a.nii.gz").get_fdata()[..., 1], vols[1], atol=1e-3)
