"""Benchmark (not a test): median time to stylise one image per AST method, fp32 against bf16 autocast.

    .venv/bin/python benchmarks/stylize.py [--size 512] [--repeats 5] [--threads 2] [--device cpu] [--weights-from RUNS]

fp32 and bf16 runs alternate (ABBA), so both see the same machine state; the table gives each one's median, the
median of the paired speed-ups and the largest and mean difference of the bf16 pastiche from the fp32 one (pixel
values in [0, 1]). bf16 runs under autocast only where the hardware computes it natively. Without `--weights-from`
the models have their untrained weights: the time does not depend on them, but the differences do (an untrained
decoder's pastiche is nearly flat); `--weights-from data/cache/runs` loads each method's newest finished balanced
`cpu` run instead.
"""
import argparse
import statistics
import time
from pathlib import Path

import torch

from balstyle.core import bf16_autocast, bf16_supported
from balstyle.transfer.methods import METHODS, build_model
from balstyle.transfer.train import load_trained


def model_for(method: str, runs: str | None):
    "The method's model: the newest finished balanced cpu run under `runs`, or untrained."
    if runs:
        done = sorted(Path(runs).glob(f"{method}-balanced-cpu-*/run.json"), key=lambda p: p.stat().st_mtime)
        if done: return load_trained(done[-1].parent), done[-1].parent.name
    torch.manual_seed(0)
    return build_model(method).eval(), "untrained"


def timed(model, content, style, device, bf16: bool):
    if device == "cuda": torch.cuda.synchronize()
    start = time.perf_counter()
    with bf16_autocast(device, bf16): pastiche = model.stylize(content, style).float()
    if device == "cuda": torch.cuda.synchronize()
    return time.perf_counter() - start, pastiche


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--methods", nargs="+", default=list(METHODS))
    parser.add_argument("--weights-from", help="a runs folder (data/cache/runs): each method's newest balanced cpu run")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"stylising one {args.size}×{args.size} image, {args.repeats} ABBA pairs, {args.threads} threads, {args.device}, "
          f"native bf16: {bf16_supported(args.device)}")
    print(f"{'method':10} {'fp32 s':>8} {'bf16 s':>8} {'speed-up':>9} {'max |Δ|':>8} {'mean |Δ|':>9}  weights")
    gen = torch.Generator().manual_seed(0)
    content, style = (torch.rand(1, 3, args.size, args.size, generator=gen).to(args.device) for _ in range(2))
    for method in args.methods:
        model, label = model_for(method, args.weights_from)
        model = model.to(args.device)
        for bf16 in (False, True): timed(model, content, style, args.device, bf16)        # warm-up
        times, pastiches = {False: [], True: []}, {}
        for r in range(args.repeats):
            for bf16 in ((False, True) if r % 2 == 0 else (True, False)):
                seconds, pastiches[bf16] = timed(model, content, style, args.device, bf16)
                times[bf16].append(seconds)
        speedups = [a / b for a, b in zip(times[False], times[True])]
        delta = (pastiches[True] - pastiches[False]).abs()
        print(f"{method:10} {statistics.median(times[False]):8.3f} {statistics.median(times[True]):8.3f} {statistics.median(speedups):9.2f} "
              f"{delta.max().item():8.4f} {delta.mean().item():9.5f}  {label}", flush=True)


if __name__ == "__main__":
    main()
