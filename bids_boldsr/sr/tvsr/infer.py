"""Inference: load a checkpoint and super-resolve one 3-D volume at a time (stream-friendly)."""
from __future__ import annotations

from dataclasses import dataclass
from itertools import product

import numpy as np
import torch

from ..grid import sr_target_grid
from .acquisition import AcquisitionModel
from .model import ResidualCNN
from ..interpolate import apply_axis_operators
from .resample import psf_upsample_operators, robust_scale, torch_trilinear, upsample_operators
from ...devices import resolve_device
from .common import autocast, data_consistency, network_input, resolve_precision, weights_sha256
from .fast_forward import fast_forward
from .oom import forward_with_fallback
from .psf_estimate import estimate_acquisition, estimate_record

FLIPS = [(), (0,), (1,), (2,), (0, 1), (0, 2), (1, 2), (0, 1, 2)]


@dataclass
class TVSRModel:
    net: ResidualCNN
    config: dict
    acquisition: AcquisitionModel
    device: torch.device
    sha256: str
    training: dict
    max_voxels: int = 4_000_000  # largest block one forward pass may see; larger volumes are tiled
    precision: str = "float32"  # the network's arithmetic ("float32" or "bfloat16": resolve_precision)

    @property
    def variant(self) -> str:
        return self.config["variant"]


def load_tvsr(checkpoint, device="auto", precision="auto") -> TVSRModel:
    """Load a checkpoint written by ``train_tvsr``; verifies the weights' sha256. ``precision``:
    the network's arithmetic at inference (``common.resolve_precision``; data consistency and the
    residual's sum stay float32)."""
    ckpt = torch.load(str(checkpoint), map_location="cpu", weights_only=False)
    hyper = ckpt["config"]["hyper"]
    net = ResidualCNN(1, hyper["features"], hyper["layers"], padding_mode=hyper["padding_mode"],
                      leaky=hyper.get("leaky", 0.0))
    net.load_state_dict(ckpt["state_dict"])
    if weights_sha256(net.state_dict()) != ckpt["sha256"]:
        raise ValueError(f"checkpoint {checkpoint} is corrupt: weights hash mismatch")
    dev = torch.device(resolve_device(device))
    model = TVSRModel(net.to(dev).eval(), ckpt["config"], AcquisitionModel(**ckpt["config"]["acquisition"]),
                      dev, ckpt["sha256"], ckpt["training"], precision=resolve_precision(precision, dev))
    if dev.type == "cuda":  # a block may use ~1/4 of free GPU memory (two live activations, bf16)
        free = torch.cuda.mem_get_info(dev)[0]
        model.max_voxels = int(max(64 ** 3, free // 4 // (2 * 2 * hyper["features"])))
    return model


def head_box(x: np.ndarray, fine_shape, margin: int = 3) -> tuple[slice, ...]:
    """Fine-grid bounding box of the head in the LR volume ``x``: voxels above 5 % of its 99th
    percentile, grown by ``margin`` LR voxels (~1 cm, for motion over the run). The network adds its
    residual only inside; outside (air) the output is the interpolation made data-consistent."""
    idx = np.argwhere(x > 0.05 * robust_scale(x))
    if idx.size == 0:
        return tuple(slice(0, n) for n in fine_shape)
    box = []
    for lo, hi, nc, nf in zip(idx.min(0) - margin, idx.max(0) + 1 + margin, x.shape, fine_shape):
        step = nf / nc
        box.append(slice(max(0, int(np.floor(lo * step))), min(nf, int(np.ceil(hi * step)))))
    return tuple(box)


def _forward_tiled(model: TVSRModel, inp: np.ndarray, box=None) -> np.ndarray:
    """Run the network on ``inp[box]`` (default: all of it) in overlapping blocks no larger than
    ``model.max_voxels``; outside ``box`` the output is ``inp``.

    Each block is extended by the receptive radius on every side (into the real neighbours, where
    the volume has them) and only its core is kept, so the result inside ``box`` is identical to one
    whole-volume pass.
    """
    margin = model.net.receptive_radius
    box = box or tuple(slice(0, n) for n in inp.shape)
    extent = [b.stop - b.start for b in box]
    edge = max(8, int(round(model.max_voxels ** (1 / 3))) - 2 * margin)
    if np.prod(extent) <= model.max_voxels:
        edge = max(extent)
    out = np.array(inp, np.float32, copy=True)
    on_cpu, bf16 = model.device.type == "cpu", model.precision == "bfloat16"
    with torch.no_grad(), autocast(model.device, model.precision):
        for start in product(*[range(b.start, b.stop, edge) for b in box]):
            core = [slice(s, min(s + edge, b.stop)) for s, b in zip(start, box)]
            ext = [slice(max(0, c.start - margin), min(n, c.stop + margin)) for c, n in zip(core, inp.shape)]
            block = torch.from_numpy(np.ascontiguousarray(inp[tuple(ext)]))[None, None].to(model.device)
            res = (fast_forward(model.net, block, bf16) if on_cpu else model.net(block)).float()[0, 0].cpu().numpy()
            out[tuple(core)] = res[tuple(slice(c.start - e.start, c.stop - e.start) for c, e in zip(core, ext))]
    return out


def _flip_box(box, shape, axes):
    box = list(box or (slice(0, n) for n in shape))
    for a in axes:
        box[a] = slice(shape[a] - box[a].stop, shape[a] - box[a].start)
    return tuple(box)


def network_output(model: TVSRModel, inp: np.ndarray, box=None, passes: int | None = None) -> np.ndarray:
    """The network on ``inp`` (in ``box``); with ``flip_ensemble: n`` (or ``passes``) the mean over the
    first ``n`` of the 8 mirror images (each run mirrored, then mirrored back): the prior was trained on
    mirrored patches, and averaging removes part of its orientation-dependent error."""
    run = lambda v, b: forward_with_fallback(model, v, lambda m, w: _forward_tiled(m, w, b))  # OOM: smaller blocks
    passes = passes or int(model.config["hyper"].get("flip_ensemble", 1))
    outs = []
    for axes in FLIPS[:max(1, passes)]:
        flipped = np.ascontiguousarray(np.flip(inp, axes)) if axes else inp
        y = run(flipped, _flip_box(box, inp.shape, axes))
        outs.append(np.flip(y, axes) if axes else y)
    return outs[0] if len(outs) == 1 else np.mean(outs, axis=0)


def super_resolve_volume(model: TVSRModel, vol3d: np.ndarray, in_affine, box=None, state=None) -> np.ndarray:
    """Super-resolve one LR volume onto ``sr_target_grid(vol3d.shape, in_affine, factor|voxel_size)``.

    ``box``: the fine-grid region the network runs on: ``"head"`` for this volume's ``head_box``
    (``run_super_resolver`` keeps the first volume's for a whole run, so the output is consistent
    over time); ``None``: the whole volume.
    Data consistency runs under the assumed ``B`` or, with ``dc_psf: "estimate"``, under the PSF
    estimated from this volume (``psf_estimate``, calibrated by ``psf_calibration`` simulated
    candidates); ``state`` (a dict) keeps that estimate (``"acquisition"``, ``"psf_table"``,
    ``"psf_calibration"``) for the rest of the run.
    """
    cfg, hyper = model.config, model.config["hyper"]
    state = {} if state is None else state
    fine_shape, _ = sr_target_grid(vol3d.shape, in_affine, factor=cfg["factor"], voxel_size=cfg["voxel_size"])
    scale = robust_scale(vol3d)
    x = np.asarray(vol3d, np.float32) / scale
    box = head_box(x, fine_shape) if box == "head" else box
    if model.variant == "published":
        with torch.no_grad():
            inp = torch_trilinear(torch.from_numpy(x)[None, None], fine_shape)[0, 0].numpy()
    else:
        inp = network_input(x, fine_shape, model.acquisition, hyper)
    y = network_output(model, inp, box)
    if "acquisition" not in state:
        if hyper.get("dc_psf") == "estimate" and hyper.get("dc_iters", 0) > 0:
            def reestimate(x_sim):  # the prior on a simulated acquisition: one pass, same box
                return network_output(model, network_input(x_sim, fine_shape, model.acquisition, hyper), box, 1)

            state["acquisition"], state["psf_table"], state["psf_calibration"] = estimate_acquisition(
                y, x, model.acquisition, reestimate, int(hyper.get("psf_calibration", 0)))
        else:
            state["acquisition"] = model.acquisition
    y = data_consistency(y, x, state["acquisition"], hyper.get("dc_iters", 0))
    return y * scale


def run_super_resolver(model: TVSRModel, run_mean: np.ndarray | None = None):
    """``f(vol3d, in_affine)`` for the volumes of one run.

    ``temporal="static"`` (the tvsr default, needs ``run_mean``): the network super-resolves the
    run's temporal mean once (with its data consistency); each volume adds its own deviation from
    the mean, interpolated (cubic spline; ``fluct_init="psf"``: the estimated PSF's own interpolation,
    band-limited along k-space-truncated axes) and made consistent with ``fluct_dc_iters`` Landweber
    steps. The
    anatomy's detail then comes from the mean (higher SNR, the same for every volume) and the time
    course is a linear function of the acquired one, so the network cannot add temporal noise.
    ``temporal="volume"``: the network on every volume, in the head box of the first one.
    The PSF used for data consistency (estimated once per run with ``dc_psf: "estimate"``) is the
    same for the mean and the fluctuations; the returned function's ``provenance`` dict holds the
    estimate for the sidecar once the first volume has been done.
    """
    hyper = model.config["hyper"]
    state, provenance = {}, {}

    def remember():
        if "psf_table" in state and not provenance:
            provenance.update(estimate_record(state["psf_table"], state.get("psf_calibration")))

    def fine_shape(vol3d, in_affine):
        cfg = model.config
        return sr_target_grid(vol3d.shape, in_affine, factor=cfg["factor"], voxel_size=cfg["voxel_size"])[0]

    def per_volume(vol3d, in_affine):
        if "box" not in state:
            state["box"] = head_box(np.asarray(vol3d, np.float32), fine_shape(vol3d, in_affine))
        out = super_resolve_volume(model, vol3d, in_affine, state["box"], state)
        remember()
        return out

    def static(vol3d, in_affine):
        if "mean" not in state:
            state["mean"] = super_resolve_volume(model, run_mean, in_affine, "head", state)
            remember()
        deviation = np.asarray(vol3d, np.float32) - run_mean
        shape = fine_shape(vol3d, in_affine)
        if "fluct_ops" not in state:  # "psf": the estimated PSF's own interpolation (issue 10)
            state["fluct_ops"] = (psf_upsample_operators(deviation.shape, shape, state["acquisition"])
                                  if hyper.get("fluct_init", "spline") == "psf"
                                  else upsample_operators(deviation.shape, shape, 3))
        fluct = data_consistency(apply_axis_operators(deviation, state["fluct_ops"]), deviation,
                                 state["acquisition"], hyper.get("fluct_dc_iters", 0))
        return state["mean"] + fluct

    if hyper.get("temporal", "volume") == "static" and model.variant != "published":
        if run_mean is None:
            raise ValueError("temporal='static' super-resolution needs the run's temporal mean")
        run_mean = np.asarray(run_mean, np.float32)
        static.provenance = provenance
        return static
    per_volume.provenance = provenance
    return per_volume


def tvsr_metadata(checkpoint) -> dict:
    """Provenance for the output sidecar."""
    ckpt = torch.load(str(checkpoint), map_location="cpu", weights_only=False)
    cfg, hyper, training = ckpt["config"], ckpt["config"]["hyper"], ckpt["training"]
    return {"SuperResolutionMethod": "tvsr", "Variant": cfg["variant"],
            "Factor": cfg["factor"], "VoxelSize": cfg["voxel_size"], "EffectiveFactor": cfg["effective_factor"],
            "Alpha": hyper["alpha"], "NetworkLayers": hyper["layers"], "NetworkFeatures": hyper["features"],
            "NetworkParameters": training["parameters"], "TrainingSteps": training["steps_run"],
            "SelectedStep": training["best_step"], "TrainingSeconds": round(training["seconds"], 2),
            "DataConsistencyIterations": hyper.get("dc_iters", 0), "AcquisitionModel": cfg["acquisition"],
            "DataConsistencyPSF": hyper.get("dc_psf", "assumed"), "FlipEnsemble": hyper.get("flip_ensemble", 1),
            "PSFCalibrationCandidates": hyper.get("psf_calibration", 0),
            "TemporalModel": hyper.get("temporal", "volume"),
            "FluctuationDataConsistencyIterations": hyper.get("fluct_dc_iters"),
            "FluctuationInterpolation": hyper.get("fluct_init", "spline"),
            "PriorWeightsSHA256": cfg.get("init_sha256"),
            "Device": training["device"], "Seed": cfg["seed"], "WeightsSHA256": ckpt["sha256"],
            "TorchVersion": training["torch"]}
