"""Up-front checks of everything a participant run reads or writes, before a workflow is built.

Each failure is one line (what is wrong, which file, what to do) with the exit code of the BIDS
execution spec (``errors.py``); nothing has been written when they are raised.
"""
from __future__ import annotations

import errno
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from .errors import EX_IOERR, BadInputData, BoldSRError, CannotCreateOutput, UsageError

SR_FACTOR_RANGE = (1.0, 8.0)        # --sr-factor: 1 keeps the grid, 8 is already 512x the voxels
SR_VOXEL_RANGE = (0.1, 20.0)        # --sr-voxel-size, mm
VOXEL_RANGE = (0.01, 50.0)          # plausible input voxel sizes, mm
MAX_SR_VOXELS = 2 ** 27             # one super-resolved volume (512 MiB as float32)
FILTER_ENTITIES_EXTRA = {"extension", "suffix", "datatype", "scope", "return_type"}


def check_sr_options(factor, voxel_size) -> None:
    """``--sr-factor`` / ``--sr-voxel-size`` within sane bounds (exit 64)."""
    for name, value, (lo, hi), unit in (("--sr-factor", factor, SR_FACTOR_RANGE, ""),
                                        ("--sr-voxel-size", voxel_size, SR_VOXEL_RANGE, " mm")):
        if value is not None and not lo <= value <= hi:
            raise UsageError(f"{name} {value:g} is out of range: choose {lo:g} to {hi:g}{unit}")


def check_filters(layout, filters: dict, path=None) -> None:
    """Every entity of ``--bids-filter-file`` must be known to the dataset's pybids layout (an
    unknown one would make ``layout.get`` raise; exit 64)."""
    if not filters:
        return
    known = set(layout.get_entities()) | FILTER_ENTITIES_EXTRA
    for query, entities in filters.items():
        unknown = sorted(set(entities) - known)
        if unknown:
            raise UsageError(f"--bids-filter-file {path or ''}: unknown BIDS entit"
                             f"{'y' if len(unknown) == 1 else 'ies'} {', '.join(unknown)} in "
                             f"'{query}'; use pybids names such as subject, session, task, run, "
                             "acquisition")


def _name(path: Path, root: Path | None) -> str:
    try:
        return str(Path(path).relative_to(root)) if root else str(path)
    except ValueError:
        return str(path)


def _read_volumes(img, label: str):
    """Yield every 3-D volume, turning a truncated or corrupt file into one line (exit 65)."""
    n = img.shape[3] if len(img.shape) == 4 else 1
    for t in range(n):
        try:
            vol = np.asarray(img.dataobj[..., t] if len(img.shape) == 4 else img.dataobj,
                             dtype=np.float32)
        except Exception as exc:  # noqa: BLE001 - EOFError, zlib.error, OSError, ValueError...
            raise BadInputData(f"{label}: the image data cannot be read, the file is truncated "
                               f"or corrupt ({type(exc).__name__}: {exc}); replace it with an "
                               "intact copy") from None
        yield t, vol


def _load(path: Path, label: str):
    import nibabel as nib

    try:
        return nib.load(path, keep_file_open=True)
    except Exception as exc:  # noqa: BLE001 - nibabel raises many types on corrupt headers
        raise BadInputData(f"{label}: not a readable NIfTI image ({exc}); replace it with an "
                           "intact copy") from None


def _check_zooms(img, label: str) -> np.ndarray:
    from .nifti import voxel_sizes

    affine = img.affine
    zooms = voxel_sizes(affine)
    lo, hi = VOXEL_RANGE
    if not (np.isfinite(affine).all() and np.all((zooms >= lo) & (zooms <= hi))
            and abs(np.linalg.det(affine[:3, :3])) > 0):
        raise BadInputData(f"{label}: implausible voxel size {np.round(zooms, 4).tolist()} mm or "
                           f"a singular affine (expected {lo:g} to {hi:g} mm); fix the header's "
                           "qform/sform")
    return zooms


def check_bold(path, meta: dict, root=None) -> float:
    """Read every volume of a BOLD run and check it against its sidecar; return the TR (s)."""
    path = Path(path)
    label = _name(path, root)
    img = _load(path, label)
    shape = img.shape
    if len(shape) != 4 or shape[3] < 2:
        raise BadInputData(f"{label}: BOLD must be 4-D with at least 2 volumes, got shape {shape}; "
                           "give the 4-D series, not one volume")
    _check_zooms(img, label)
    for t, vol in _read_volumes(img, label):
        if not np.isfinite(vol).all():
            raise BadInputData(f"{label}: volume {t} contains NaN or infinite values; remove or "
                               "repair that volume")
        if t == 0 and float(vol.max()) == float(vol.min()):
            raise BadInputData(f"{label}: the first volume is constant (no signal)")
    tr = _repetition_time(path, img, meta, label)
    _check_slice_timing(meta, shape, tr, label)
    return tr


def _repetition_time(path, img, meta, label) -> float:
    sidecar = path.name.split(".")[0] + ".json"
    tr = meta.get("RepetitionTime")
    if tr is None:
        raise BadInputData(f"{label}: no RepetitionTime in its JSON sidecar (BIDS requires it); "
                           f"add \"RepetitionTime\": <seconds> to {sidecar}")
    if isinstance(tr, bool) or not isinstance(tr, (int, float)) or not np.isfinite(tr) or tr <= 0:
        raise BadInputData(f"{label}: RepetitionTime {tr!r} in the sidecar is not a positive "
                           f"number of seconds; fix {sidecar}")
    zoom_t = float(img.header.get_zooms()[3])
    units = img.header.get_xyzt_units()[1]
    scale = {"sec": 1.0, "msec": 1e-3, "usec": 1e-6}.get(units)  # compared only when declared
    header_tr = zoom_t * (scale or 0.0)
    if header_tr > 0 and abs(header_tr - tr) > max(0.01 * tr, 1e-3):
        raise BadInputData(f"{label}: the sidecar's RepetitionTime {tr:g} s contradicts the NIfTI "
                           f"header's {header_tr:g} s; correct whichever is wrong")
    return float(tr)


def _check_slice_timing(meta, shape, tr, label) -> None:
    times = meta.get("SliceTiming")
    if times is None:
        return
    axis = {"i": 0, "j": 1, "k": 2}.get(str(meta.get("SliceEncodingDirection", "k"))[:1], 2)
    if not isinstance(times, list) or len(times) != shape[axis]:
        n = len(times) if isinstance(times, list) else "no list"
        raise BadInputData(f"{label}: SliceTiming has {n} entries but the image has "
                           f"{shape[axis]} slices; fix SliceTiming in the sidecar")
    if not all(isinstance(t, (int, float)) and 0 <= t < tr for t in times):
        raise BadInputData(f"{label}: SliceTiming values must lie in [0, RepetitionTime = {tr:g} s);"
                           " fix SliceTiming in the sidecar")


def check_t1w(path, root=None) -> None:
    """The T1w is one 3-D volume (a trailing singleton dimension is fine), readable, finite."""
    path = Path(path)
    label = _name(path, root)
    img = _load(path, label)
    shape = img.shape
    if not (len(shape) == 3 or (len(shape) == 4 and shape[3] == 1)):
        raise BadInputData(f"{label}: a T1w must be one 3-D volume, got shape {shape}; select a "
                           "3-D T1w (e.g. with a 't1w' query in --bids-filter-file)")
    _check_zooms(img, label)
    for _, vol in _read_volumes(img, label):
        if not np.isfinite(vol).all():
            raise BadInputData(f"{label}: the T1w contains NaN or infinite values; repair it")


def check_sr_grid(path, factor, voxel_size, root=None) -> int:
    """The super-resolved grid of a run stays a sane size; return its voxels per volume."""
    import nibabel as nib

    from .sr.grid import sr_target_grid

    img = nib.load(path)
    shape, _ = sr_target_grid(img.shape[:3], img.affine, factor=factor, voxel_size=voxel_size)
    voxels = int(np.prod(shape))
    if voxels > MAX_SR_VOXELS:
        what = f"--sr-voxel-size {voxel_size:g}" if voxel_size else f"--sr-factor {factor:g}"
        raise UsageError(f"{_name(Path(path), root)}: {what} gives a {'x'.join(map(str, shape))} "
                         f"grid ({voxels / 1e6:.0f} M voxels per volume, at most "
                         f"{MAX_SR_VOXELS / 1e6:.0f} M); choose a smaller factor or larger voxels")
    return voxels


def check_writable(folder: Path, label: str) -> None:
    """Create and remove a file in ``folder``: catches read-only mounts even for root (exit 73)."""
    try:
        fd, probe = tempfile.mkstemp(prefix=".bids-boldsr-probe.", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise BoldSRError(f"the {label} directory {folder} is full (no space left on device);"
                              " free space or choose another folder", EX_IOERR) from None
        raise CannotCreateOutput(f"the {label} directory {folder} is not writable "
                                 f"({exc.strerror or exc}); choose a writable folder") from None


def check_free_space(needs: dict) -> None:
    """``needs`` maps (label, folder) to bytes; folders on one file system add up (exit 74)."""
    by_device: dict[int, list] = {}
    for (label, folder), size in needs.items():
        by_device.setdefault(os.stat(folder).st_dev, []).append((label, folder, size))
    for items in by_device.values():
        total = sum(size for _, _, size in items)
        free = shutil.disk_usage(items[0][1]).free
        if free < total:
            names = " and ".join(f"the {label} directory {folder}" for label, folder, _ in items)
            raise BoldSRError(f"not enough free space for {names}: about {total / 2**20:.0f} MiB "
                              f"needed, {free / 2**20:.0f} MiB free; free space or choose "
                              "another folder", EX_IOERR)


def space_needed(runs, voxels: list[int], n_series: int) -> tuple[int, int]:
    """Rough bytes (output, work) for the runs: each series int16 (gzip halves it at best; the
    work dir keeps float intermediates too)."""
    series = sum(v * nib_volumes(r.path) * 2 for r, v in zip(runs, voxels))
    return series * n_series // 2 + 2 ** 20, series * (n_series + 2) + 2 ** 20


def nib_volumes(path) -> int:
    import nibabel as nib

    shape = nib.load(path).shape
    return shape[3] if len(shape) == 4 else 1


def check_run(config, subjects: dict) -> None:
    """The checks that need the selected runs: SR grid sizes and free space (the folders were
    probed for writing by ``cli.run._check_paths``)."""
    runs = [r for data in subjects.values() for r in data["bold"]]
    grid = config.sr_grid
    voxels = [check_sr_grid(r.path, grid["factor"], grid["voxel_size"], config.bids_dir)
              for r in runs]
    out, work = space_needed(runs, voxels, len(config.output_spaces.strings()) + 1)
    check_free_space({("output", config.output_dir): out, ("work", config.work_dir): work})
