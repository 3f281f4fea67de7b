"""Train the brain-mask network (:mod:`.brain`) on whole heads synthesised from label maps (seeded).

The weights measured in docs/benchmarks-segmentation.md come from one command (none are shipped):

    python -m bids_boldsr.segmentation.train_brain --labelmaps ../shared/data/labelmaps \
        --out BRAIN_WEIGHTS --steps 1000 --seed 0

The SynthStrip recipe (Hoopes et al. 2022) at the locator's scale: the whole head at 4 mm, a random
intensity per label (T1, EPI or any order, extra-cerebral labels included), random affine, elastic and
EPI-like distortion, bias, blur, noise, gamma, a slab cut, skull already stripped (25 %); target =
the brain without the CSF around it (as the template brain masks). Label maps 13
and 14 are held back; sample ``i`` is drawn from a generator seeded with (seed, i).
"""
import hashlib
import json
import math
import platform
import sys
import time
from pathlib import Path

import torch

from .brain import BRAIN_NET, WEIGHTS_NAME
from .cnn import UNet3D
from .synth import load_label_map, synth_head
from .train import HOLDOUT, base_parser, state_sha256, train_step, training_files


class Heads(torch.utils.data.Dataset):
    def __init__(self, maps, seed, steps, options):
        self.maps, self.seed, self.steps, self.options = maps, seed, steps, options

    def __len__(self):
        return self.steps

    def __getitem__(self, i):
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + i)
        lm = self.maps[int(torch.randint(len(self.maps), (), generator=gen))]
        return synth_head(lm, gen, work_mm=BRAIN_NET["work_mm"], target="brain", **self.options)


def train(labelmaps, out, steps=1000, seed=0, threads=1, workers=1, lr=2e-3, log_every=25,
          holdout=HOLDOUT, skull_strip_p=0.25, cut_p=0.2, dropout_p=0.25):
    """Train, then write ``brain_unet.pt`` and its record ``brain_unet.json`` to ``out``."""
    start = time.time()
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)
    files = training_files(labelmaps, holdout)
    maps = [load_label_map(p) for p in files]
    torch.manual_seed(seed)
    net = UNet3D(**BRAIN_NET)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * s / steps)))
    options = {"skull_strip_p": skull_strip_p, "cut_p": cut_p, "dropout_p": dropout_p}
    loader = torch.utils.data.DataLoader(Heads(maps, seed, steps, options), batch_size=None, shuffle=False,
                                         num_workers=workers, prefetch_factor=4 if workers else None)
    curve, recent = [], []
    for step, (image, target) in enumerate(loader):
        recent.append(train_step(net, opt, image[None], target[None]))
        sched.step()
        if (step + 1) % log_every == 0 or step + 1 == steps:
            curve.append({"step": step + 1, "loss": round(sum(recent) / len(recent), 4)})
            elapsed = time.time() - start
            print(f"step {step + 1}/{steps}  loss {curve[-1]['loss']:.4f}  {elapsed:.0f}s "
                  f"(eta {elapsed / (step + 1) * (steps - step - 1):.0f}s)", flush=True)
            recent = []
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / WEIGHTS_NAME
    tmp = path.with_name(path.name + ".tmp")
    torch.save({"net": net.state_dict(), "config": json.dumps(BRAIN_NET)}, tmp)
    tmp.replace(path)
    record = {
        "weights": path.name, "weights_sha256": state_sha256(net.state_dict()),
        "file_sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        "training_data": [p.name for p in files], "held_out": list(holdout),
        "source": "BBillot/SynthSeg data/training_label_maps (Apache-2.0)",
        "target": "brain: every non-extra-cerebral label but the exterior CSF (aseg 24)", "network": BRAIN_NET,
        "steps": steps, "seed": seed, "threads": threads, "lr": lr, "synthesis": options,
        "loss": "soft cross-entropy", "seconds": round(time.time() - start, 1),
        "torch": torch.__version__, "python": platform.python_version(), "loss_curve": curve,
        "command": "python -m bids_boldsr.segmentation.train_brain " + " ".join(sys.argv[1:]),
    }
    path.with_suffix(".json").write_text(json.dumps(record, indent=1) + "\n")
    return record


def main(argv=None) -> int:
    ap = base_parser("python -m bids_boldsr.segmentation.train_brain", __doc__, "brain_unet", 1000)
    args = ap.parse_args(argv)
    record = train(args.labelmaps, args.out, args.steps, args.seed, args.threads, args.workers,
                   holdout=tuple(args.holdout))
    print(json.dumps({k: record[k] for k in ("weights_sha256", "steps", "seed", "seconds")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
