"""Apply a composed transform chain to a 4-D series, one interpolation per volume, streamed.

Engines (same interpolation, ``bids-boldsr-bench resample`` times them against each other):

- ``scipy``: ``ndimage.map_coordinates`` on the whole grid, one thread (the reference);
- ``threads``: the same calls on chunks of the grid in a thread pool (scipy releases the GIL), with
  the next volume read and the previous one compressed while the current one is sampled: the
  values of ``scipy`` exactly, on every core;
- ``numba``: ``registration.kernel``, a compiled kernel on every core that maps and samples each
  point in one pass (equal to ``scipy`` within float32 rounding; orders 1 and 3);
- ``torch``: ``registration.spline`` (the GPU path; on CPU equal to ``scipy`` within float32
  rounding, but slower);
- ``auto``: ``torch`` on a CUDA device, else ``numba`` (orders 1 and 3), else ``threads``.

Memory stays flat in run length: one input volume, its coefficients and one output volume at a time.
"""
from __future__ import annotations

import os
from collections import deque
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from scipy import ndimage

from ..nifti import Int16Overflow, StreamingNiftiWriter, int16_scale, load_series, series_max_abs
from ..progress import Progress
from . import kernel
from .resample import grid_points, map_points, points_to_voxels

ENGINES = ("auto", "numba", "threads", "scipy", "torch")


def pick_engine(engine: str, device: str = "cpu", order: int = 3) -> str:
    if engine not in ENGINES:
        raise ValueError(f"unknown resampling engine {engine!r}: choose one of {ENGINES}")
    if engine == "auto":
        if str(device).startswith("cuda"):
            return "torch"
        return "numba" if order in (1, 3) and kernel.available() else "threads"
    return engine


def resample_series(bold_file, out_file, ref_shape, ref_affine, transforms=(),
                    volume_transforms=None, order=3, progress=True, engine="auto", device="cpu",
                    threads=None, chunk=2 ** 18) -> dict:
    """Resample every volume of ``bold_file`` onto a reference grid; returns ``{"engine",
    "threads", "volumes", "seconds"}``.

    ``transforms`` is the chain shared by all volumes (output space -> BOLD reference), evaluated
    once; ``volume_transforms`` an optional ``(T, 4, 4)`` stack of per-volume pull matrices
    (BOLD reference -> volume t, i.e. head motion) appended to the chain, so motion,
    coregistration and normalisation are applied in a single interpolation. ``threads``: worker
    threads (default: the CPUs this process may use); ``chunk``: grid points per task."""
    import time

    t0 = time.perf_counter()
    engine = pick_engine(engine, device, order)
    threads = max(1, int(threads or _usable_cpus()))
    img = load_series(bold_file)
    n = img.shape[3]
    points = map_points(grid_points(ref_shape, ref_affine, dtype=np.float32), transforms)
    name = getattr(out_file, "name", str(out_file))
    # int16 scaled for the whole series' range (+50 % for spline overshoot); float32 if a volume
    # still overflows it: the writer never clips
    try:
        _write(img, out_file, ref_shape, ref_affine, engine, points, order, device, threads, chunk,
               volume_transforms, progress, name, np.int16, int16_scale(1.5 * series_max_abs(img)))
    except Int16Overflow:
        _write(img, out_file, ref_shape, ref_affine, engine, points, order, device, threads, chunk,
               volume_transforms, progress, name, np.float32, None)
    return {"engine": engine, "threads": threads if engine != "scipy" else 1, "volumes": n,
            "seconds": time.perf_counter() - t0}


def _write(img, out_file, ref_shape, ref_affine, engine, points, order, device, threads, chunk,
           volume_transforms, progress, name, dtype, scale):
    """One streamed pass: volume t+1 is read and the previous ones are compressed (one gzip member
    each, in parallel, written in order) while volume t is sampled; ``scipy`` does all in turn."""
    n = img.shape[3]
    meter = Progress(f"resample {name}", n, unit="vol", enabled=progress)
    with StreamingNiftiWriter(out_file, tuple(ref_shape) + (n,), ref_affine, header=img.header,
                              dtype=dtype, scale=scale) as writer, \
            ThreadPoolExecutor(threads) as pool, ThreadPoolExecutor(threads + 1) as io:
        sampler = _sampler(engine, points, img.affine, ref_shape, order, device, threads, chunk, pool)

        def read(t):
            return np.asarray(img.dataobj[..., t], dtype=np.float32)

        nxt, encoding = io.submit(read, 0), deque()
        for t in range(n):
            vol = nxt.result()
            if engine != "scipy" and t + 1 < n:
                nxt = io.submit(read, t + 1)  # decompression overlaps the sampling
            elif t + 1 < n:
                nxt = _Done(read(t + 1))
            motion = None if volume_transforms is None else np.asarray(volume_transforms[t], float)
            out = sampler(vol, motion)
            if engine == "scipy":
                writer.write_volume(out)
            else:
                encoding.append(io.submit(writer.encode, out, t))
                while len(encoding) > threads:  # bounded: at most `threads` volumes in flight
                    writer.write_encoded(encoding.popleft().result())
            meter.update(t + 1)
        while encoding:
            writer.write_encoded(encoding.popleft().result())


class _Done:
    def __init__(self, value):
        self.value = value

    def result(self):
        return self.value


def _usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _sampler(engine, points, src_affine, ref_shape, order, device, threads, chunk, pool):
    if engine == "numba":
        return _compiled_sampler(points, src_affine, ref_shape, order, threads)
    if engine == "torch":
        return _torch_sampler(points, src_affine, ref_shape, order, device, threads, chunk)
    if engine == "scipy":
        return _scipy_sampler(points, src_affine, ref_shape, order)
    return _threaded_sampler(points, src_affine, ref_shape, order, chunk, pool)


def _scipy_one(coef, points, src_affine, motion, order):
    """The reference arithmetic (float32 motion, float64 world -> voxel), for any subset of points."""
    pts = points if motion is None else map_points(points, [motion.astype(np.float32)])
    return ndimage.map_coordinates(coef, points_to_voxels(pts, src_affine), order=order,
                                   mode="constant", cval=0.0, prefilter=False)


def _scipy_sampler(points, src_affine, ref_shape, order):
    def run(vol, motion):
        coef = ndimage.spline_filter(vol, order=order) if order > 1 else vol
        return _scipy_one(coef, points, src_affine, motion, order).reshape(tuple(ref_shape))
    return run


def _threaded_sampler(points, src_affine, ref_shape, order, chunk, pool):
    n = points.shape[0]
    bounds = [(s, min(s + chunk, n)) for s in range(0, n, chunk)]

    def run(vol, motion):
        coef = ndimage.spline_filter(vol, order=order) if order > 1 else vol
        out = np.empty(n, dtype=np.float64 if order > 1 else np.float32)

        def part(b):
            out[b[0]:b[1]] = _scipy_one(coef, points[b[0]:b[1]], src_affine, motion, order)
        list(pool.map(part, bounds))
        return out.reshape(tuple(ref_shape))
    return run


def _compiled_sampler(points, src_affine, ref_shape, order, threads):
    import numba

    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    to_voxels = np.linalg.inv(np.asarray(src_affine, dtype=float))
    points = np.ascontiguousarray(points, dtype=np.float32)

    def run(vol, motion):
        m = to_voxels if motion is None else to_voxels @ motion
        coef = kernel.coefficients(vol, order)
        return kernel.sample_points(coef, vol.shape, points, m, order).reshape(tuple(ref_shape))
    return run


def _torch_sampler(points, src_affine, ref_shape, order, device, threads, chunk):
    import torch

    from .spline import Coefficients, sample

    if not str(device).startswith("cuda"):
        torch.set_num_threads(threads)
    pts = torch.from_numpy(np.ascontiguousarray(points, dtype=np.float32)).to(device)
    to_voxels = np.linalg.inv(np.asarray(src_affine, dtype=float))
    step = chunk if not str(device).startswith("cuda") else 2 ** 22

    def run(vol, motion):
        m = to_voxels if motion is None else to_voxels @ motion
        rot = torch.as_tensor(m[:3, :3].T, dtype=torch.float32, device=device)
        shift = torch.as_tensor(m[:3, 3], dtype=torch.float32, device=device)
        coef = Coefficients(vol, device, order=order)
        out = torch.empty(pts.shape[0], dtype=torch.float32, device=device)
        with torch.no_grad():
            for s in range(0, pts.shape[0], step):
                out[s:s + step] = sample(coef, torch.addmm(shift, pts[s:s + step], rot).T)
        return out.cpu().numpy().reshape(tuple(ref_shape))
    return run
