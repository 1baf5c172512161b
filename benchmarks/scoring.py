"""Benchmark (not a test): the evaluation scoring pass's throughput, pairs per second per method, fp32 against bf16.

    .venv/bin/python benchmarks/scoring.py [--scale cpu] [--pairs 64] [--repeats 3] [--threads 2]

Untrained weights: the time of a pass does not depend on them. Each repeat scores the same `--pairs` evaluation pairs
(the first ones of the scale's set) with every method, fp32 and bf16 alternating (ABBA order), into a fresh cache
folder; the table gives the median pairs per second of each and, for bf16, the largest difference of the per-pair
balanced loss against fp32 (bf16 autocast applies only where the CPU or GPU supports it: see `bf16 supported`).
"""
import argparse
import statistics
import tempfile
import time

import torch

from balstyle.core import bf16_supported
from balstyle.transfer.evaluation import build_scorer, evaluation_pairs, score_model
from balstyle.transfer.methods import METHODS, build_model


def timed(model, pairs, scorer, bf16: bool, device) -> tuple[float, object]:
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        table = score_model(model, pairs, scorer, f"bench-{bf16}", "bench", bf16=bf16, device=device, progress=False, folder=folder)
        return time.perf_counter() - start, table


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", default="cpu")
    parser.add_argument("--pairs", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--methods", nargs="+", default=list(METHODS))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    pairs = evaluation_pairs(args.scale)
    subset = pairs.iloc[:args.pairs]
    subset.attrs = pairs.attrs
    scorer = build_scorer(pairs, device=args.device, progress=False)
    print(f"{args.pairs} pairs at {scorer.image_size} px, {args.threads} threads, {args.device}; bf16 supported: {bf16_supported(args.device)}")
    print(f"{'method':10} {'fp32 pairs/s':>13} {'bf16 pairs/s':>13} {'speed-up':>9} {'max |Δ balanced|':>17}")
    for method in args.methods:
        torch.manual_seed(0)
        model = build_model(method).to(args.device).eval()
        times, tables = {False: [], True: []}, {}
        for r in range(args.repeats):
            for bf16 in ((False, True) if r % 2 == 0 else (True, False)):
                seconds, tables[bf16] = timed(model, subset, scorer, bf16, args.device)
                times[bf16].append(seconds)
        fp32, bf16 = (args.pairs / statistics.median(times[k]) for k in (False, True))
        delta = (tables[True]["balanced"] - tables[False]["balanced"]).abs().max()
        print(f"{method:10} {fp32:13.2f} {bf16:13.2f} {bf16 / fp32:9.2f} {delta:17.4f}")


if __name__ == "__main__":
    main()
