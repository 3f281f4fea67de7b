"""Train the cerebellum locator + segmenter on images synthesised from label maps (CPU, seeded).

The shipped weights (``bids_boldsr/data/segmentation/cerebellum_unet.pt``) come from one command:

    python -m bids_boldsr.segmentation.train --labelmaps ../shared/data/labelmaps \
        --out bids_boldsr/data/segmentation --steps 3000 --seed 0

Label maps 13 and 14 are held back for evaluation (``--holdout``). Sample ``i`` is drawn from a
generator seeded with (seed, i), so a run is reproducible whatever the data-loader process does.
After training the decision threshold is fitted on seeded validation crops (:mod:`.calibration`).
"""
import argparse
import hashlib
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from .cnn import LOCATOR, SEGMENTER, UNet3D
from .synth import load_label_map, synth_crop, synth_head

HOLDOUT = ("13", "14")


def soft_dice_ce(logits, target, dice_weight=0.0):
    """Cross-entropy with soft (partial-volume) targets, + ``dice_weight`` x mean soft Dice loss of
    the foreground classes. Default: cross-entropy alone. Soft Dice biases volumes where the image
    is uncertain (Bertels et al. 2021): with it the shipped network of 0.1.x over-segmented the
    cerebellum by about 1-2 mm all round (false positives 8x the misses on the labelled T1w)."""
    logp = F.log_softmax(logits, 1)
    loss = -(target * logp).sum(1).mean()
    if dice_weight:
        prob = logp.exp()[:, 1:]
        tgt = target[:, 1:]
        dims = (0, 2, 3, 4)
        dice = (2 * (prob * tgt).sum(dims) + 1) / (prob.sum(dims) + tgt.sum(dims) + 1)
        loss = loss + dice_weight * (1 - dice.mean())
    return loss


def train_step(net, opt, image, target, dice_weight=0.0):
    opt.zero_grad(set_to_none=True)
    loss = soft_dice_ce(net(image), target, dice_weight)
    loss.backward()
    opt.step()
    return loss.item()


class Samples(torch.utils.data.Dataset):
    """Sample ``i``: a segmenter crop, plus a locator head every ``locator_every`` steps."""

    def __init__(self, maps, seed, steps, locator_every, synth_options=None):
        self.maps, self.seed, self.steps, self.locator_every = maps, seed, steps, locator_every
        self.options = synth_options or {}

    def __len__(self):
        return self.steps

    def __getitem__(self, i):
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + i)
        crop = synth_crop(self.maps[int(torch.randint(len(self.maps), (), generator=gen))], gen, **self.options)
        head = None
        if i % self.locator_every == 0:
            head = synth_head(self.maps[int(torch.randint(len(self.maps), (), generator=gen))], gen, **self.options)
        return crop, head


def training_files(folder, holdout=HOLDOUT) -> list[Path]:
    """The label maps of ``folder`` (``training_seg_XX.nii.gz``) but the held-out numbers."""
    files = sorted(p for p in Path(folder).glob("training_seg_*.nii*")
                   if not any(p.name.startswith(f"training_seg_{h}.") for h in holdout))
    if not files:
        raise FileNotFoundError(f"no training_seg_*.nii.gz in {folder}")
    return files


def base_parser(prog, doc, weights, steps) -> argparse.ArgumentParser:
    """The options every label-map training command shares."""
    ap = argparse.ArgumentParser(prog=prog, description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--labelmaps", required=True, help="folder with training_seg_XX.nii.gz")
    ap.add_argument("--out", required=True, help=f"folder for {weights}.pt/.json")
    ap.add_argument("--steps", type=int, default=steps)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1, help="torch threads for the networks")
    ap.add_argument("--workers", type=int, default=1, help="synthesis processes (0: in-process)")
    ap.add_argument("--holdout", nargs="*", default=list(HOLDOUT), help="label map numbers kept out")
    return ap


def state_sha256(state: dict) -> str:
    """Hash of the tensors (names, dtypes, values): stable across torch.save container details."""
    h = hashlib.sha256()
    for key in sorted(state):
        value = state[key]
        h.update(key.encode())
        h.update(value.encode() if isinstance(value, str) else value.cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def train(labelmaps, out, steps=1500, seed=0, threads=1, workers=1, locator_every=3, lr=2e-3,
          log_every=25, holdout=HOLDOUT, segmenter=None, locator=None, init=None, dice_weight=0.0,
          calibration_crops=24, checkpoint_every=0, dropout_p=0.25, cut_p=0.3, device="cpu"):
    """Train both networks, fit the decision threshold (:mod:`.calibration`) and write
    ``cerebellum_unet.pt`` + ``cerebellum_unet.json`` to ``out``.

    ``init``: a checkpoint to continue from (its record is kept under ``"init"``);
    ``checkpoint_every``: also write ``cerebellum_unet.stepN.pt`` every N steps (to inspect a run);
    ``device``: "cuda" trains the networks on the GPU (synthesis stays on the CPU workers); its weights
    differ from a CPU run's, so the record names the device."""
    start = time.time()
    torch.set_num_threads(threads)
    if device == "cuda":  # cuDNN/cuBLAS: deterministic where they can be, warn where they cannot
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
    else:
        torch.use_deterministic_algorithms(True)
    files = training_files(labelmaps, holdout)
    maps = [load_label_map(p) for p in files]
    seg_cfg, loc_cfg = dict(segmenter or SEGMENTER), dict(locator or LOCATOR)
    torch.manual_seed(seed)
    nets = {"segmenter": UNet3D(**seg_cfg), "locator": UNet3D(**loc_cfg)}  # seeded on the CPU
    previous = None
    if init:
        checkpoint = torch.load(init, map_location="cpu", weights_only=True)
        for key, net in nets.items():
            net.load_state_dict(checkpoint[key])
        record_path = Path(init).with_suffix(".json")
        previous = json.loads(record_path.read_text()) if record_path.exists() else {"weights": str(init)}
    nets = {k: n.to(device) for k, n in nets.items()}
    opts = {k: torch.optim.Adam(n.parameters(), lr=lr) for k, n in nets.items()}
    # cosine decay to 5 % of lr: most of the gain comes early, the tail settles the weights
    scheds = {k: torch.optim.lr_scheduler.LambdaLR(o, lambda s: 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * s / steps)))
              for k, o in opts.items()}
    synth_options = {"dropout_p": dropout_p, "cut_p": cut_p}
    loader = torch.utils.data.DataLoader(Samples(maps, seed, steps, locator_every, synth_options), batch_size=None,
                                         shuffle=False, num_workers=workers, prefetch_factor=4 if workers else None)
    curve, recent = [], {"segmenter": [], "locator": []}
    for step, (crop, head) in enumerate(loader):
        for key, sample in (("segmenter", crop), ("locator", head)):
            if sample is not None:
                recent[key].append(train_step(nets[key], opts[key], sample[0][None].to(device),
                                              sample[1][None].to(device), dice_weight))
            scheds[key].step()
        if checkpoint_every and (step + 1) % checkpoint_every == 0 and step + 1 < steps:
            _save(nets, seg_cfg, loc_cfg, Path(out) / f"cerebellum_unet.step{step + 1}.pt")
        if (step + 1) % log_every == 0 or step + 1 == steps:
            means = {k: sum(v) / max(1, len(v)) for k, v in recent.items()}
            curve.append({"step": step + 1, **{k: round(v, 4) for k, v in means.items()}})
            elapsed = time.time() - start
            print(f"step {step + 1}/{steps}  segmenter {means['segmenter']:.4f}  locator {means['locator']:.4f}"
                  f"  {elapsed:.0f}s (eta {elapsed / (step + 1) * (steps - step - 1):.0f}s)", flush=True)
            recent = {k: [] for k in recent}
    state = {}
    for key, net in nets.items():
        state.update({f"{key}.{k}": v for k, v in net.state_dict().items()})
    from .calibration import fit_threshold

    threshold, calibration = fit_threshold(nets["segmenter"], maps, seed, calibration_crops, device)
    out = Path(out)
    _save(nets, seg_cfg, loc_cfg, out / "cerebellum_unet.pt", threshold)
    record = {
        "weights": "cerebellum_unet.pt",
        "weights_sha256": state_sha256(state),
        "file_sha256": hashlib.sha256((out / "cerebellum_unet.pt").read_bytes()).hexdigest(),
        "training_data": [p.name for p in files], "held_out": list(holdout),
        "source": "BBillot/SynthSeg data/training_label_maps (Apache-2.0)",
        "steps": steps, "seed": seed, "device": device, "threads": threads, "lr": lr, "locator_every": locator_every,
        "synthesis": synth_options,
        "loss": "soft cross-entropy" + (f" + {dice_weight} x soft Dice" if dice_weight else ""),
        "threshold": threshold, "calibration": {"crops": calibration_crops, "dice_by_threshold": calibration},
        "segmenter": seg_cfg, "locator": loc_cfg, "seconds": round(time.time() - start, 1),
        "torch": torch.__version__, "python": platform.python_version(), "loss_curve": curve,
        "command": "python -m bids_boldsr.segmentation.train " + " ".join(sys.argv[1:]),
    }
    if previous:
        record["init"] = previous
    (out / "cerebellum_unet.json").write_text(json.dumps(record, indent=1) + "\n")
    return record


def _save(nets, seg_cfg, loc_cfg, path, threshold=0.5):
    cpu = {k: {name: v.cpu() for name, v in n.state_dict().items()} for k, n in nets.items()}
    checkpoint = {"segmenter": cpu["segmenter"], "locator": cpu["locator"],
                  "segmenter_config": json.dumps(seg_cfg), "locator_config": json.dumps(loc_cfg),
                  "threshold": float(threshold)}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(checkpoint, tmp)
    tmp.replace(path)


def main(argv=None) -> int:
    ap = base_parser("python -m bids_boldsr.segmentation.train", __doc__, "cerebellum_unet", 1500)
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                    help="cuda: train on the GPU (faster; weights differ from the CPU recipe's)")
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--init", help="continue from this checkpoint (e.g. more steps, another seed)")
    ap.add_argument("--locator-every", type=int, default=3, help="one locator step every N segmenter steps")
    ap.add_argument("--dice-weight", type=float, default=0.0, help="add this x soft Dice to the cross-entropy")
    ap.add_argument("--calibration-crops", type=int, default=24, help="validation crops for the threshold")
    ap.add_argument("--checkpoint-every", type=int, default=0, help="write intermediate checkpoints")
    ap.add_argument("--dropout-p", type=float, default=0.25, help="share of samples with EPI-like signal dropout")
    ap.add_argument("--cut-p", type=float, default=0.3, help="share of samples with a slab cut")
    args = ap.parse_args(argv)
    record = train(args.labelmaps, args.out, args.steps, args.seed, args.threads, args.workers,
                   locator_every=args.locator_every, lr=args.lr, holdout=tuple(args.holdout),
                   init=args.init, dice_weight=args.dice_weight, calibration_crops=args.calibration_crops,
                   checkpoint_every=args.checkpoint_every, dropout_p=args.dropout_p, cut_p=args.cut_p,
                   device=args.device)
    print(json.dumps({k: record[k] for k in ("weights_sha256", "steps", "seed", "threshold", "seconds")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
