"""Benchmark (not a test): median time to stylise one 512×512 image per AST method.

    .venv/bin/python benchmarks/stylize.py [--size 512] [--repeats 5] [--threads 2] [--device cpu]

Untrained weights: the time does not depend on them. Prints a table of median and spread per method.
"""
import argparse
import statistics
import time

import torch

from balstyle.transfer.methods import METHODS, build_model


def bench(method: str, size: int, repeats: int, device: str) -> list[float]:
    torch.manual_seed(0)
    model = build_model(method).to(device).eval()
    content, style = torch.rand(1, 3, size, size, device=device), torch.rand(1, 3, size, size, device=device)
    model.stylize(content, style)                              # warm-up
    times = []
    for _ in range(repeats):
        if device == "cuda": torch.cuda.synchronize()
        start = time.perf_counter()
        model.stylize(content, style)
        if device == "cuda": torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return times


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--methods", nargs="+", default=list(METHODS))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"stylising one {args.size}×{args.size} image, {args.repeats} runs, {args.threads} threads, {args.device}")
    print(f"{'method':10} {'median s':>9} {'min s':>7} {'max s':>7}")
    for method in args.methods:
        t = bench(method, args.size, args.repeats, args.device)
        print(f"{method:10} {statistics.median(t):9.3f} {min(t):7.3f} {max(t):7.3f}")


if __name__ == "__main__":
    main()
