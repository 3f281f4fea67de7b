"""Inference: load a checkpoint and super-resolve one 3-D volume at a time (stream-friendly)."""
from __future__ import annotations

from dataclasses import dataclass
from itertools import product

import numpy as np
import torch

from ..grid import sr_target_grid
from .acquisition import AcquisitionModel
from .model import ResidualCNN
from .resample import robust_scale, torch_trilinear
from ...devices import resolve_device
from .common import autocast, data_consistency, network_input, weights_sha256
from .oom import forward_with_fallback


@dataclass
class TVSRModel:
    net: ResidualCNN
    config: dict
    acquisition: AcquisitionModel
    device: torch.device
    sha256: str
    training: dict
    max_voxels: int = 4_000_000  # largest block one forward pass may see; larger volumes are tiled

    @property
    def variant(self) -> str:
        return self.config["variant"]


def load_tvsr(checkpoint, device="auto") -> TVSRModel:
    """Load a checkpoint written by ``train_tvsr``; verifies the weights' sha256."""
    ckpt = torch.load(str(checkpoint), map_location="cpu", weights_only=False)
    hyper = ckpt["config"]["hyper"]
    net = ResidualCNN(1, hyper["features"], hyper["layers"], padding_mode=hyper["padding_mode"],
                      leaky=hyper.get("leaky", 0.0))
    net.load_state_dict(ckpt["state_dict"])
    if weights_sha256(net.state_dict()) != ckpt["sha256"]:
        raise ValueError(f"checkpoint {checkpoint} is corrupt: weights hash mismatch")
    dev = torch.device(resolve_device(device))
    model = TVSRModel(net.to(dev).eval(), ckpt["config"], AcquisitionModel(**ckpt["config"]["acquisition"]),
                      dev, ckpt["sha256"], ckpt["training"])
    if dev.type == "cuda":  # a block may use ~1/4 of free GPU memory (two live activations, bf16)
        free = torch.cuda.mem_get_info(dev)[0]
        model.max_voxels = int(max(64 ** 3, free // 4 // (2 * 2 * hyper["features"])))
    return model


def _forward_tiled(model: TVSRModel, inp: np.ndarray) -> np.ndarray:
    """Run the network on ``inp`` in overlapping blocks no larger than ``model.max_voxels``.

    Each block is extended by the receptive radius on every side and only its core is kept, so
    the result is identical to one whole-volume pass.
    """
    margin = model.net.receptive_radius
    edge = max(8, int(round(model.max_voxels ** (1 / 3))) - 2 * margin)
    shape = inp.shape
    if np.prod(shape) <= model.max_voxels:
        edge = max(shape)
    out = np.empty(shape, np.float32)
    with torch.no_grad(), autocast(model.device):
        for start in product(*[range(0, n, edge) for n in shape]):
            core = [slice(s, min(s + edge, n)) for s, n in zip(start, shape)]
            ext = [slice(max(0, c.start - margin), min(n, c.stop + margin)) for c, n in zip(core, shape)]
            block = torch.from_numpy(np.ascontiguousarray(inp[tuple(ext)]))[None, None].to(model.device)
            res = model.net(block).float()[0, 0].cpu().numpy()
            out[tuple(core)] = res[tuple(slice(c.start - e.start, c.stop - e.start) for c, e in zip(core, ext))]
    return out


def super_resolve_volume(model: TVSRModel, vol3d: np.ndarray, in_affine) -> np.ndarray:
    """Super-resolve one LR volume onto ``sr_target_grid(vol3d.shape, in_affine, factor|voxel_size)``."""
    cfg = model.config
    fine_shape, _ = sr_target_grid(vol3d.shape, in_affine, factor=cfg["factor"], voxel_size=cfg["voxel_size"])
    scale = robust_scale(vol3d)
    x = np.asarray(vol3d, np.float32) / scale
    if model.variant == "published":
        with torch.no_grad():
            inp = torch_trilinear(torch.from_numpy(x)[None, None], fine_shape)[0, 0].numpy()
    else:
        inp = network_input(x, fine_shape, model.acquisition, cfg["hyper"])
    y = forward_with_fallback(model, inp, _forward_tiled)  # out of GPU memory: smaller, then CPU
    y = data_consistency(y, x, model.acquisition, cfg["hyper"].get("dc_iters", 0))
    return y * scale


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
            "Device": training["device"], "Seed": cfg["seed"], "WeightsSHA256": ckpt["sha256"],
            "TorchVersion": training["torch"]}
