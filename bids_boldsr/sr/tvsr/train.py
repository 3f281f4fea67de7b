"""Self-supervised training on the LR data of one or more BOLD runs (no HR ever seen).

Two variants share the checkpoint format:

* ``tvsr`` (ours): scale recursion ("zero-shot SR"). Each LR volume ``x`` is degraded once more by
  the explicit acquisition model, ``x' = B x`` on a grid ``factor`` times coarser; the network learns
  ``spline(x') -> x`` (MSE, or Charbonnier, data term + ``alpha`` * isotropic TV) on randomly
  mirrored patches, and is applied to ``spline(x)`` at inference. Held-out LR volumes give a
  validation loss that picks the weights and stops training (no HR needed). Inference adds a
  data-consistency refinement under ``B``. Defaults chosen on the benchmark: docs/benchmarks-sr.md.
* ``published``: trilinear upsampling + 10-layer residual CNN trained with
  ``||x - B f(x)||^2 + 0.01 TV(f(x))``, ``B`` a trilinear resample, Adam 1e-3 halved on a
  5-epoch plateau.
"""
from __future__ import annotations

import copy
import hashlib
import json
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import torch
import torch.nn.functional as F

from ..grid import sr_target_grid
from .acquisition import acquisition_from_image, coarse_shape_for, sidecar_for
from ...devices import resolve_device
from ...progress import step as progress_step
from .common import autocast, network_input, weights_sha256
from .model import PRIOR_NET, ResidualCNN, total_variation
from .psf_family import random_acquisition
from ...segmentation.train import state_sha256
from .resample import robust_scale, torch_trilinear

# more steps lower the held-out LR loss but over-sharpen at the finer scale: 300 is the budget
_TVSR = dict(features=16, layers=8, alpha=1e-4, steps=300, lr=2e-3, batch=4, patch=24,
             val_every=25, patience=8, loss="mse", charbonnier_eps=1e-3, flips=True, leaky=0.1,
             dc_iters=50, input_dc=0, max_volumes=48, padding_mode="replicate", psf="assumed",
             psf_draws=2, temporal="static", fluct_dc_iters=10, fluct_init="spline")
DEFAULTS = {
    "tvsr": _TVSR,
    # the learned prior (train_prior.py, shipped weights), fine-tuned by the scale recursion over the
    # PSF family for ``steps`` (0: the prior as shipped); the mean over 8 mirror images, then data
    # consistency under the PSF estimated from the run (psf_estimate.py, its 8 best candidates
    # checked by simulation), for the mean and fluctuations
    "prior": {**_TVSR, **PRIOR_NET, "steps": 0, "lr": 2e-4, "psf": "family", "init": "prior",
              "flip_ensemble": 8, "dc_psf": "estimate", "psf_calibration": 8,
              # fluctuations: the estimated PSF's own interpolation, then as many consistency steps as
              # the mean (0.7.3; chosen on ds-forrest's two GLM rows: docs/benchmarks-sr.md)
              "fluct_init": "psf", "fluct_dc_iters": 50},
    "published": dict(features=16, layers=10, alpha=0.01, steps=600, lr=1e-3, batch=4, patch=12,
                      epoch_steps=10, plateau_patience=5, max_volumes=48, padding_mode="zeros",
                      dc_iters=0),
}
SLOPPY = dict(steps=12, val_every=4, max_volumes=4, flip_ensemble=1)  # tests: one network pass
PRIOR_WEIGHTS = Path(__file__).resolve().parents[2] / "data" / "sr" / "tvsr_prior.pt"


def load_prior(name="prior") -> dict:
    """The shipped prior's weights (``"prior"``) or a ``tvsr_prior.pt`` path; checks their sha256
    against the record written beside them by ``train_prior``."""
    path = PRIOR_WEIGHTS if name == "prior" else Path(name)
    if not path.exists():
        raise FileNotFoundError(f"SR prior weights not found: {path}")
    ckpt = torch.load(str(path), map_location="cpu", weights_only=True)
    record = path.with_suffix(".json")
    sha = state_sha256(ckpt["state_dict"])
    if record.exists() and json.loads(record.read_text())["weights_sha256"] != sha:
        raise ValueError(f"SR prior weights {path} do not match their record {record.name}")
    return {"state_dict": ckpt["state_dict"], "config": ckpt["config"], "sha256": sha, "path": str(path)}


def _run_id(path: str) -> dict:
    stat = Path(path).stat()
    return {"path": str(Path(path).resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def _load_volumes(bold_files, max_volumes, rng) -> list[np.ndarray]:
    """Up to ``max_volumes`` volumes per run (evenly spaced), each divided by its robust scale."""
    vols = []
    for path in bold_files:
        img = nib.load(str(path))
        n_t = img.shape[3] if img.ndim == 4 else 1
        picks = np.unique(np.linspace(0, n_t - 1, min(n_t, max_volumes)).round().astype(int))
        data = img.dataobj
        for t in picks:
            vol = np.asarray(data[..., t] if img.ndim == 4 else data, dtype=np.float32)
            vols.append(vol / robust_scale(vol))
    return vols


def _random_crop(rng, shape, patch):
    size = [min(p, n) for p, n in zip(patch, shape)]
    start = [int(rng.integers(0, n - p + 1)) for n, p in zip(shape, size)]
    return tuple(slice(s, s + p) for s, p in zip(start, size))


def _charbonnier(a, b, eps=1e-3):
    return torch.sqrt((a - b) ** 2 + eps * eps).mean()


def _train_scale_recursion(net, vols, acq, factor, hyper, rng, device, log):
    """Train ``spline(B x) -> x`` on random patches; pick weights by held-out LR volumes.

    ``psf="family"``: each volume makes ``psf_draws`` pairs, each degraded by its own draw from
    ``psf_family`` instead of the assumed ``acq`` (the network learns to undo any of them)."""
    per_volume = []
    for vol in vols:
        draws = ([random_acquisition(rng, acq.slice_axis) for _ in range(hyper["psf_draws"])]
                 if hyper.get("psf") == "family" else [acq])
        per_volume.append([(network_input(m.apply(vol, coarse_shape_for(vol.shape, factor)), vol.shape, m, hyper),
                            vol) for m in draws])
    n_val = max(1, len(vols) // 8) if len(vols) > 1 else 0  # held out by volume, all its draws
    held = set(range(0, len(vols), max(1, len(vols) // n_val))[:n_val]) if n_val else set()
    val = [p for i in sorted(held) for p in per_volume[i]] or per_volume[0]
    train = [p for i, group in enumerate(per_volume) if i not in held for p in group] or val
    opt = torch.optim.Adam(net.parameters(), lr=hyper["lr"])
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=hyper["steps"], eta_min=hyper["lr"] / 20)
    patch = [hyper["patch"]] * 3
    eps = hyper.get("charbonnier_eps", 1e-3)
    data_term = (lambda a, b: _charbonnier(a, b, eps)) if hyper["loss"] == "charbonnier" else F.mse_loss

    def val_loss():
        net.eval()
        with torch.no_grad(), autocast(device):
            err = [F.mse_loss(net(torch.from_numpy(u)[None, None].to(device)).float(),
                              torch.from_numpy(x)[None, None].to(device)).item() for u, x in val]
        net.train()
        return float(np.mean(err))

    best = (val_loss(), 0, copy.deepcopy(net.state_dict()))
    history = [(0, best[0])]
    for step in range(1, hyper["steps"] + 1):
        picks = [train[int(rng.integers(len(train)))] for _ in range(hyper["batch"])]
        crops = [(u[c], x[c]) for u, x in picks for c in [_random_crop(rng, x.shape, patch)]]
        inp = torch.stack([torch.from_numpy(np.ascontiguousarray(u))[None] for u, _ in crops]).to(device)
        tgt = torch.stack([torch.from_numpy(np.ascontiguousarray(x))[None] for _, x in crops]).to(device)
        if hyper.get("flips"):  # B is symmetric along every axis: mirrored pairs are valid pairs
            axes = [2 + a for a in range(3) if rng.random() < 0.5]
            inp, tgt = (inp.flip(axes), tgt.flip(axes)) if axes else (inp, tgt)
        with autocast(device):
            out = net(inp).float()
            loss = data_term(out, tgt) + hyper["alpha"] * total_variation(out, reduction="mean")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        progress_step("SR training", step, hyper["steps"])
        sched.step()
        if step % hyper["val_every"] == 0 or step == hyper["steps"]:
            current = val_loss()
            history.append((step, current))
            log(f"step {step} train {loss.item():.5f} val {current:.6f}")
            if current < best[0]:
                best = (current, step, copy.deepcopy(net.state_dict()))
            elif (step - best[1]) >= hyper["patience"] * hyper["val_every"]:
                break  # validation stopped improving: the net started fitting noise
    net.load_state_dict(best[2])
    return {"best_step": best[1], "steps_run": history[-1][0], "val_mse": best[0], "history": history}


def _train_published(net, vols, factor, hyper, rng, device, log):
    """Faithful published loss on LR patches: ||x - B_tri f(U_tri x)||^2 + alpha TV, plateau halving."""
    opt = torch.optim.Adam(net.parameters(), lr=hyper["lr"])
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.5, patience=hyper["plateau_patience"])
    patch = [hyper["patch"]] * 3
    epoch_loss, history = [], []
    for step in range(1, hyper["steps"] + 1):
        crops = [vols[int(rng.integers(len(vols)))] for _ in range(hyper["batch"])]
        crops = [x[_random_crop(rng, x.shape, patch)] for x in crops]
        x = torch.stack([torch.from_numpy(np.ascontiguousarray(c))[None] for c in crops]).to(device)
        fine = sr_target_grid(x.shape[2:], np.eye(4), factor=factor)[0]
        with autocast(device):
            y = net(torch_trilinear(x, fine)).float()
            loss = F.mse_loss(torch_trilinear(y, x.shape[2:]), x) + hyper["alpha"] * total_variation(y, reduction="mean")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        progress_step("SR training", step, hyper["steps"])
        epoch_loss.append(loss.item())
        if step % hyper["epoch_steps"] == 0:
            sched.step(np.mean(epoch_loss))
            history.append((step, float(np.mean(epoch_loss))))
            log(f"epoch {step // hyper['epoch_steps']} loss {np.mean(epoch_loss):.6f} lr {opt.param_groups[0]['lr']:.2e}")
            epoch_loss = []
    return {"best_step": hyper["steps"], "steps_run": hyper["steps"], "history": history}


def train_tvsr(bold_files, factor=None, voxel_size=None, variant="tvsr", device="cpu", seed=0,
               sloppy=False, out_dir=".", sidecar=None, slice_profile="gaussian", verbose=False,
               **hyper) -> Path:
    """Train one network on the LR volumes of ``bold_files``; return the checkpoint path.

    Give ``factor`` (scalar or per-axis) or ``voxel_size`` (mm). ``sidecar`` (path or dict) sets the
    slice profile (``slice_profile``: "gaussian" or "box"); by default the BIDS sidecar next to the
    first file is read. ``hyper`` overrides
    ``DEFAULTS[variant]``. An existing checkpoint with the same configuration is returned as is.
    """
    if variant not in DEFAULTS:
        raise ValueError(f"unknown variant {variant!r}; choose from {sorted(DEFAULTS)}")
    unknown = set(hyper) - set(DEFAULTS[variant])
    if unknown:
        raise TypeError(f"unknown hyper-parameters {sorted(unknown)}")
    bold_files = [str(f) for f in bold_files]
    # sloppy: seconds-long, never more steps than the variant's own; explicit hyper-parameters win
    sloppy_params = {**SLOPPY, "steps": min(SLOPPY["steps"], DEFAULTS[variant]["steps"])} if sloppy else {}
    params = {**DEFAULTS[variant], **sloppy_params, **hyper}
    first = nib.load(bold_files[0])
    acq = acquisition_from_image(first, sidecar if sidecar is not None else sidecar_for(bold_files[0]),
                                 slice_profile)
    shape3 = first.shape[:3]
    fine_shape, fine_affine = sr_target_grid(shape3, first.affine, factor=factor, voxel_size=voxel_size)
    eff_factor = [f / c for f, c in zip(fine_shape, shape3)]
    init = load_prior(params["init"]) if params.get("init") else None
    config = {"method": "tvsr", "variant": variant, "factor": factor, "voxel_size": voxel_size,
              "effective_factor": eff_factor, "seed": seed, "sloppy": sloppy, "hyper": params,
              "acquisition": acq.to_dict(), "inputs": [_run_id(f) for f in bold_files]}
    if init is not None:
        config["init_sha256"] = init["sha256"]
    key = hashlib.sha256(json.dumps(config, sort_keys=True, default=float).encode()).hexdigest()[:16]
    out_dir = Path(out_dir)
    ckpt_path = out_dir / f"tvsr-{variant}-{key}.pt"
    if ckpt_path.exists():
        return ckpt_path

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    dev = torch.device(resolve_device(device))
    log = print if verbose else (lambda *_: None)
    net = ResidualCNN(1, params["features"], params["layers"], padding_mode=params["padding_mode"],
                      zero_init=variant == "tvsr", leaky=params.get("leaky", 0.0)).to(dev)
    if init is not None:
        net.load_state_dict(init["state_dict"])
    started = time.perf_counter()
    vols = _load_volumes(bold_files, params["max_volumes"], rng) if params["steps"] else []
    if not vols:  # the prior as shipped
        info = {"best_step": 0, "steps_run": 0, "history": []}
    elif variant != "published":
        info = _train_scale_recursion(net, vols, acq, eff_factor, params, rng, dev, log)
    else:
        info = _train_published(net, vols, eff_factor, params, rng, dev, log)
    state = {k: v.detach().cpu() for k, v in net.state_dict().items()}
    ckpt = {"config": config, "state_dict": state, "sha256": weights_sha256(state),
            "training": {**info, "seconds": time.perf_counter() - started, "device": str(dev),
                         "parameters": sum(p.numel() for p in net.parameters()),
                         "torch": torch.__version__}}
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = ckpt_path.with_suffix(".pt.part")
    torch.save(ckpt, tmp)
    tmp.replace(ckpt_path)  # atomic: a killed run never leaves a truncated checkpoint
    return ckpt_path
