"""Train the learned SR prior on synthetic BOLD-like volumes (:mod:`.synth_epi`; CPU, seeded).

The shipped weights (``bids_boldsr/data/sr/tvsr_prior.pt`` and its record ``tvsr_prior.json``) come
from one command:

    python -m bids_boldsr.sr.tvsr.train_prior --labelmaps ../shared/data/labelmaps \
        --out bids_boldsr/data/sr --steps 3000 --seed 0 --threads 2 --val-every 250

The network is tvsr's residual CNN (so ``train_tvsr(..., init="prior")`` can start from it and
inference is unchanged). It learns ``spline(LR) -> clean HR`` where the LR comes from a PSF of
``psf_family`` at a random factor 1.25-3 that it is never told. A pool of HR volumes is synthesised
once (volume ``i`` from a generator seeded with (seed, i)); every step draws fresh degradations of
it (step ``s`` from (seed, s)). Label maps 13 and 14 are held back: the validation pairs come from
them, and the weights with the lowest validation error are kept.
"""
from __future__ import annotations

import copy
import hashlib
import json
import math
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ...segmentation.synth import load_label_map
from ...segmentation.train import HOLDOUT, base_parser, state_sha256, training_files
from .model import PRIOR_NET, ResidualCNN
from .synth_epi import degrade, synth_hr_epi

WEIGHTS_NAME = "tvsr_prior.pt"
PATCH = 32


def _generator(seed, i):
    return torch.Generator().manual_seed(seed * 1_000_003 + i)


class Pool(torch.utils.data.Dataset):
    """Volume ``i`` of the HR pool: label map ``i mod n`` (every map equally often)."""

    def __init__(self, maps, seed, size):
        self.maps, self.seed, self.size = maps, seed, size

    def __len__(self):
        return self.size

    def __getitem__(self, i):
        return synth_hr_epi(self.maps[i % len(self.maps)], _generator(self.seed, i))


class Batches(torch.utils.data.Dataset):
    """Step ``s``: ``batch`` random patches, each of a fresh degradation of a pool volume."""

    def __init__(self, pool, seed, steps, batch):
        self.pool, self.seed, self.steps, self.batch = pool, seed, steps, batch

    def __len__(self):
        return self.steps

    def __getitem__(self, s):
        gen = _generator(self.seed + 7919, s)
        inputs, targets = [], []
        for _ in range(self.batch):
            hr = self.pool[int(torch.randint(len(self.pool), (), generator=gen))]
            inp, _, scale, _ = degrade(hr, gen)
            start = [int(torch.randint(n - PATCH + 1, (), generator=gen)) for n in hr.shape]
            crop = tuple(slice(a, a + PATCH) for a in start)
            pair = torch.from_numpy(np.stack([inp[crop], hr[crop] / scale]))
            flips = [1 + a for a in range(3) if torch.rand((), generator=gen) < 0.5]
            pair = pair.flip(flips) if flips else pair
            inputs.append(pair[:1])
            targets.append(pair[1:])
        return torch.stack(inputs), torch.stack(targets)


def synthesise_pool(maps, seed, size, workers):
    loader = torch.utils.data.DataLoader(Pool(maps, seed, size), batch_size=None, num_workers=workers)
    return [vol.numpy() for vol in loader]


def validation_pairs(maps, seed, n=12, factor=2.0):
    """Whole held-out volumes at x``factor`` under random PSFs: (input, target) in the LR's units."""
    pairs = []
    for i in range(n):
        gen = _generator(seed + 104729, i)
        hr = synth_hr_epi(maps[i % len(maps)], gen)
        inp, _, scale, _ = degrade(hr, gen, factor)
        pairs.append((torch.from_numpy(inp)[None, None], torch.from_numpy(hr / scale)[None, None]))
    return pairs


def validation_gain(net, pairs) -> float:
    """Mean PSNR gain (dB) of the network over its spline input on the validation pairs."""
    net.eval()
    gains = []
    with torch.no_grad():
        for inp, tgt in pairs:
            gains.append(10 * math.log10(F.mse_loss(inp, tgt).item() / F.mse_loss(net(inp), tgt).item()))
    net.train()
    return float(np.mean(gains))


def train(labelmaps, out, steps=3000, seed=0, threads=1, workers=1, lr=1e-3, batch=6, pool=480,
          val_every=100, holdout=HOLDOUT, log_every=25, init=None):
    """Train the prior; write ``tvsr_prior.pt`` and ``tvsr_prior.json`` to ``out``; return the record.

    ``init``: a ``tvsr_prior.pt`` to continue from (its record is kept under ``"init"``); give
    another ``seed`` so that the continuation sees a new pool of volumes."""
    start = time.time()
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)
    files = training_files(labelmaps, holdout)
    maps = [load_label_map(p) for p in files]
    held = [load_label_map(p) for p in sorted(Path(labelmaps).glob("training_seg_*.nii*"))
            if any(p.name.startswith(f"training_seg_{h}.") for h in holdout)]
    volumes = synthesise_pool(maps, seed, pool, workers)
    val = validation_pairs(held or maps, seed)
    pool_seconds = time.time() - start
    torch.manual_seed(seed)
    net = ResidualCNN(1, **PRIOR_NET)
    previous = None
    if init:
        net.load_state_dict(torch.load(init, map_location="cpu", weights_only=True)["state_dict"])
        record_path = Path(init).with_suffix(".json")
        previous = json.loads(record_path.read_text()) if record_path.exists() else {"weights": str(init)}
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * s / steps)))
    loader = torch.utils.data.DataLoader(Batches(volumes, seed, steps, batch), batch_size=None, shuffle=False,
                                         num_workers=workers, prefetch_factor=4 if workers else None)
    best = (validation_gain(net, val), 0, copy.deepcopy(net.state_dict()))
    curve, recent = [{"step": 0, "val_gain_db": round(best[0], 4)}], []
    for step, (inp, tgt) in enumerate(loader, start=1):
        loss = F.mse_loss(net(inp), tgt)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        recent.append(loss.item())
        if step % val_every == 0 or step == steps:
            gain = validation_gain(net, val)
            curve.append({"step": step, "loss": round(float(np.mean(recent)), 6), "val_gain_db": round(gain, 4)})
            recent = []
            if gain > best[0]:
                best = (gain, step, copy.deepcopy(net.state_dict()))
        if step % log_every == 0 or step == steps:
            elapsed = time.time() - start
            print(f"step {step}/{steps}  loss {loss.item():.6f}  best val gain {best[0]:+.3f} dB (step {best[1]})"
                  f"  {elapsed:.0f}s (eta {elapsed / step * (steps - step):.0f}s)", flush=True)
    net.load_state_dict(best[2])
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / WEIGHTS_NAME
    tmp = path.with_name(path.name + ".tmp")
    torch.save({"state_dict": net.state_dict(), "config": PRIOR_NET}, tmp)
    tmp.replace(path)
    record = {
        "weights": path.name, "weights_sha256": state_sha256(net.state_dict()),
        "file_sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        "training_data": [p.name for p in files], "held_out": list(holdout),
        "source": "BBillot/SynthSeg data/training_label_maps (Apache-2.0)", "network": PRIOR_NET,
        "parameters": sum(p.numel() for p in net.parameters()),
        "task": "spline(LR) -> clean HR; HR 2.5-3.5 mm synthetic BOLD-like, LR by a psf_family draw at x1.25-3",
        "steps": steps, "seed": seed, "threads": threads, "lr": lr, "batch": batch, "patch": PATCH,
        "pool_volumes": pool, "pool_seconds": round(pool_seconds, 1),
        "selected_step": best[1], "val_gain_db": round(best[0], 4),
        "validation": f"{len(val)} whole held-out volumes at x2, random PSFs: PSNR gain over the spline input",
        "seconds": round(time.time() - start, 1), "torch": torch.__version__,
        "python": platform.python_version(), "curve": curve,
        "command": "python -m bids_boldsr.sr.tvsr.train_prior " + " ".join(sys.argv[1:]),
    }
    if previous:
        record["init"] = previous
    (out / "tvsr_prior.json").write_text(json.dumps(record, indent=1) + "\n")
    return record


def main(argv=None) -> int:
    ap = base_parser("python -m bids_boldsr.sr.tvsr.train_prior", __doc__, "tvsr_prior", 3000)
    ap.add_argument("--pool", type=int, default=480, help="synthetic HR volumes made before training")
    ap.add_argument("--batch", type=int, default=6)
    ap.add_argument("--val-every", type=int, default=100)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--init", help="a tvsr_prior.pt to continue from")
    args = ap.parse_args(argv)
    record = train(args.labelmaps, args.out, args.steps, args.seed, args.threads, args.workers,
                   batch=args.batch, pool=args.pool, val_every=args.val_every, holdout=tuple(args.holdout),
                   lr=args.lr, init=args.init)
    print(f"wrote {Path(args.out) / WEIGHTS_NAME}: validation gain {record['val_gain_db']:+.3f} dB "
          f"(step {record['selected_step']}) in {record['seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
