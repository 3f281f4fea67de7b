"""NIfTI helpers shared by every engine: voxel sizes, and 4-D series read and written one volume at a
time.

Write a 4-D NIfTI one volume at a time (memory independent of the number of volumes).

NIfTI stores x fastest and t slowest, so each volume is one contiguous block after the
header: the header is written first and volumes are appended as they are produced.
The file is written under a temporary name and renamed on success, so a killed run never
leaves a half-written output.
"""
from __future__ import annotations

import os
import zlib
from pathlib import Path

import nibabel as nib
import numpy as np

try:  # ISA-L's deflate: the same format, faster than zlib at level 1
    from isal import isal_zlib as _deflate
except ImportError:  # not every platform has wheels: zlib writes the same kind of member
    _deflate = zlib


def voxel_sizes(affine) -> np.ndarray:
    """Voxel sizes (mm) encoded by an affine's columns."""
    return np.sqrt((np.asarray(affine)[:3, :3] ** 2).sum(axis=0))


def load_series(path) -> nib.Nifti1Image:
    """Open a 4-D image for reading volume by volume.

    ``keep_file_open`` keeps one gzip stream open, so reading volumes in order is a forward
    seek; without it every volume re-decompresses the file from the start (quadratic; 17x
    slower already at 40 volumes of an 80x80x35 run).
    """
    return nib.load(path, keep_file_open=True)


class StreamingNiftiWriter:
    """Context manager: ``with StreamingNiftiWriter(path, shape4d, affine) as w: w.write_volume(v)``.

    ``dtype`` float32 (default) or int16; for int16 give ``scale`` (the NIfTI scl_slope) so that
    stored = round(value / scale).  ``.nii.gz`` paths are gzip-compressed at ``compresslevel``
    (1 by default: gzip, not compute, dominates large outputs; with ISA-L, levels above 3 are 3).
    """

    def __init__(self, path, shape4d, affine, header=None, dtype=np.float32, scale=None,
                 compresslevel=1, zooms_t=None):
        self.path = Path(path)
        self.shape = tuple(int(s) for s in shape4d)
        if len(self.shape) != 4:
            raise ValueError(f"expected a 4-D shape, got {self.shape}")
        self.dtype = np.dtype(dtype)
        hdr = nib.Nifti1Header() if header is None else header.copy()
        hdr.set_data_dtype(self.dtype)
        hdr.set_data_shape(self.shape)
        zooms = list(np.sqrt((np.asarray(affine)[:3, :3] ** 2).sum(axis=0)))
        t_zoom = zooms_t if zooms_t is not None else (
            header.get_zooms()[3] if header is not None and len(header.get_zooms()) > 3 else 1.0)
        hdr.set_zooms(zooms + [float(t_zoom)])
        hdr.set_xyzt_units("mm", "sec")
        hdr.set_qform(affine, code=1)
        hdr.set_sform(affine, code=1)
        self.scale = None
        if self.dtype.kind in "iu":
            self.scale = float(scale) if scale else 1.0
            hdr.set_slope_inter(self.scale, 0.0)
        else:
            hdr.set_slope_inter(np.nan, np.nan)
        hdr["vox_offset"] = 352
        self.header = hdr
        self.compresslevel = compresslevel
        self.written = 0
        self._tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.part")
        self._fh = None

    def __enter__(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(self._tmp, "wb")
        block = self.header.binaryblock
        self._fh.write(self._compress(block + b"\x00" * (352 - len(block))))  # + empty extension
        return self

    def encode(self, vol: np.ndarray, index: int | None = None) -> bytes:
        """The bytes :meth:`write_encoded` appends for one volume: scaled, checked, and for
        ``.nii.gz`` compressed as its own gzip member. Touches no state of the writer, so volumes
        may be encoded in parallel threads (zlib and numpy release the GIL) and written in order."""
        vol = np.asarray(vol)
        if vol.shape != self.shape[:3]:
            raise ValueError(f"volume shape {vol.shape} != {self.shape[:3]}")
        if self.scale is not None:
            info = np.iinfo(self.dtype)
            vol = np.divide(vol, self.scale)
            np.rint(vol, out=vol)
            if not (vol.min(initial=0) >= info.min and vol.max(initial=0) <= info.max):
                where = self.written if index is None else index
                raise Int16Overflow(f"volume {where} exceeds the int16 range at scale {self.scale:g}")
        return self._compress(vol.astype(self.dtype, order="F").tobytes(order="F"))

    def write_encoded(self, data: bytes) -> None:
        if self.written >= self.shape[3]:
            raise ValueError("more volumes written than declared")
        self._fh.write(data)
        self.written += 1

    def write_volume(self, vol: np.ndarray) -> None:
        self.write_encoded(self.encode(vol))

    def _compress(self, data: bytes) -> bytes:
        """A gzip member (no name, no time: reproducible bytes) for ``.nii.gz``, else ``data``.
        Concatenated members are one valid gzip file (RFC 1952), read as one stream by
        Python's gzip, nibabel, zlib's gzread (FSL, AFNI, ITK) and gunzip."""
        if not self.path.name.endswith(".gz"):
            return data
        packer = _deflate.compressobj(min(self.compresslevel, 3), zlib.DEFLATED, 31)
        return packer.compress(data) + packer.flush()

    def __exit__(self, exc_type, exc, tb):
        try:
            self._fh.close()  # a full disk may fail now
        except BaseException:
            self._tmp.unlink(missing_ok=True)
            if exc_type is None:
                raise
            return False
        if exc_type is None and self.written != self.shape[3]:
            self._tmp.unlink(missing_ok=True)
            raise ValueError(f"wrote {self.written} of {self.shape[3]} volumes")
        if exc_type is None:
            os.replace(self._tmp, self.path)
        else:
            self._tmp.unlink(missing_ok=True)
        return False


class Int16Overflow(ValueError):
    """A volume does not fit the int16 range chosen for the series (the writer never clips)."""


def series_stats(img) -> tuple[float, np.ndarray]:
    """One pass over a 4-D image, a volume at a time: the largest absolute finite value (for the
    int16 scale) and the temporal mean volume (float64 sum, float32 result)."""
    top, total = 0.0, np.zeros(img.shape[:3])
    for t in range(img.shape[3]):
        vol = np.asarray(img.dataobj[..., t], dtype=np.float32)
        top = max(top, _finite_max_abs(vol))
        total += vol
    return top, (total / img.shape[3]).astype(np.float32)


def series_max_abs(img) -> float:
    """The largest absolute finite value over every volume of a 4-D image (read one at a time)."""
    return max((_finite_max_abs(np.asarray(img.dataobj[..., t], dtype=np.float32))
                for t in range(img.shape[3])), default=0.0)


def _finite_max_abs(vol: np.ndarray) -> float:
    """The largest |value| among the finite ones (0 if none): min/max, no masked copy unless
    the volume holds +-inf or is all NaN."""
    low, high = float(np.nanmin(vol, initial=np.inf)), float(np.nanmax(vol, initial=-np.inf))
    if not (np.isfinite(low) and np.isfinite(high)):
        finite = vol[np.isfinite(vol)]
        low, high = float(finite.min(initial=0.0)), float(finite.max(initial=0.0))
    return max(abs(low), abs(high))


def write_series(path, shape4d, affine, header, volume, max_abs: float, headroom: float = 1.5):
    """Write ``volume(t)`` for every t as int16 scaled for ``headroom * max_abs`` (the whole
    series' range); when a volume still overflows that range (an overshoot beyond the head-room),
    write the series again as float32: no value is ever clipped. Returns the dtype written."""
    try:
        with StreamingNiftiWriter(path, shape4d, affine, header=header, dtype=np.int16,
                                  scale=int16_scale(headroom * max_abs)) as writer:
            for t in range(shape4d[3]):
                writer.write_volume(volume(t))
        return np.int16
    except Int16Overflow:
        with StreamingNiftiWriter(path, shape4d, affine, header=header, dtype=np.float32) as writer:
            for t in range(shape4d[3]):
                writer.write_volume(volume(t))
        return np.float32


def int16_scale(max_abs: float) -> float:
    """A scl_slope that maps ``[-max_abs, max_abs]`` onto int16 with ~15 bits of precision."""
    return max(float(max_abs), 1e-6) / 32000.0
