"""``bids-boldsr-bench threads``: why every step runs with the threads its node declares.

The SVF registration's iteration (loss, then gradient) on the 1.5 mm working grid of a T1w -> template
registration (random images of that size) is timed in one process and in two side by side, each with one
thread and with two: what Nipype's MultiProc does when two steps run at once and each keeps torch's
default of one thread per core. Times per iteration; ratios are what to read on a shared machine."""
from __future__ import annotations

import argparse
import json
import multiprocessing
import time
from pathlib import Path

from ..cli.parser import _positive_int

SHAPE = (112, 136, 116)  # the 1.5 mm working grid of ds-forrest's T1w -> MNI152NLin2009aSym


def _iterations(threads: int, iters: int, shape, queue) -> None:
    import numpy as np
    import torch

    from ..registration import svf

    torch.set_num_threads(threads)
    gen = torch.Generator().manual_seed(0)
    fix, mov = torch.rand(1, 1, *shape, generator=gen), torch.rand(1, 1, *shape, generator=gen)
    grid = svf.Grid(np.zeros(3), 1.5, tuple(shape))
    scale = svf._scale(grid, "cpu")
    v = (torch.randn(1, 3, *svf._half(shape), generator=gen) * 0.01).requires_grad_(True)
    step = lambda: svf._loss(fix, mov, svf._integrate(v, shape), scale, 1.5, svf.DEFAULTS["svf"]).backward()  # noqa: E731
    step()  # warm-up
    t0 = time.perf_counter()
    for _ in range(iters):
        step()
    queue.put((time.perf_counter() - t0) / iters)


def measure(processes: int, threads: int, iters: int, shape=SHAPE) -> list[float]:
    """Seconds per iteration in each of ``processes`` simultaneous processes of ``threads`` threads."""
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_iterations, args=(threads, iters, shape, queue)) for _ in range(processes)]
    for p in procs:
        p.start()
    times = [queue.get() for _ in procs]
    for p in procs:
        p.join()
    return times


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="bids-boldsr-bench threads", description=__doc__.splitlines()[0])
    p.add_argument("--iters", type=_positive_int, default=8)
    p.add_argument("--shape", type=_positive_int, nargs=3, default=list(SHAPE))
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    rows = []
    for processes, threads in ((1, 1), (1, 2), (2, 1), (2, 2)):
        times = measure(processes, threads, args.iters, tuple(args.shape))
        rows.append({"processes": processes, "threads_each": threads, "s_per_iteration": [round(t, 3) for t in times]})
        print(f"{processes} process(es) x {threads} thread(s): " + ", ".join(f"{t:.2f}" for t in times) + " s/iteration")
    base = rows[2]["s_per_iteration"]
    worst = rows[3]["s_per_iteration"]
    ratio = max(worst) / max(base)
    print(f"two steps side by side: {ratio:.2f}x slower with 2 threads each than with 1 each")
    if args.json:
        args.json.write_text(json.dumps({"what": __doc__, "shape": args.shape, "iters": args.iters,
                                         "cpus": multiprocessing.cpu_count(), "rows": rows,
                                         "oversubscribed_over_limited": round(ratio, 2)}, indent=2) + "\n")
    return 0
