"""Benchmark (not a test): median training-step time per AST method, by precision or by style loss.

    .venv/bin/python benchmarks/train_step.py [--size 128] [--batch 4] [--repeats 5] [--threads 2] [--device cpu|cuda]
        [--compare precision|loss] [--variants fp32 bf16 bf16+cl fp32+cl bf16+cl+compile] [--loss balanced]

One step = the method's forward passes, the loss network on pastiche, content and style, every loss term, backward
and Adam, exactly as `balstyle.transfer.train` runs it. `--compare precision` (the default) times each variant of
one method in turn, rotating their order every repeat so that none always runs first, and prints each variant's
median and the median of its paired speed-ups against fp32 (the first variant). `--compare loss` alternates the
classic and the balanced style loss (ABBA) in one precision (`--variants` first entry) and prints their ratio.
bf16 runs under autocast only where the hardware computes it natively (`balstyle.core.bf16_supported`); elsewhere
it is fp32 and the header says so.
"""
import argparse
import statistics
import time

import torch

from balstyle.core import bf16_autocast, bf16_supported
from balstyle.features import PAPER_CONTENT_LAYER, PAPER_STYLE_LAYERS, loss_network
from balstyle.transfer.methods import METHODS
from balstyle.transfer.train import Objective, TrainingStep, run_config, training_model


def make_step(method: str, loss: str, net, device, variant: str):
    "A fresh training step and its Adam for `variant` (fp32 | bf16, + cl for channels-last, + compile)."
    config = run_config(method, loss, "smoke", decoder_init=None)
    torch.manual_seed(0)
    step = TrainingStep(method, training_model(config), Objective(loss, net, 1.0, 1.0, config.extra_weights)).to(device)
    if "+cl" in variant: step = step.to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam([p for p in step.parameters() if p.requires_grad], lr=1e-4)
    runner = torch.compile(step) if "+compile" in variant else step
    return runner, optimizer


def timed(step, optimizer, content, style, device, variant: str) -> float:
    "Seconds of one step: forward under the variant's precision, backward, Adam."
    if "+cl" in variant: content, style = (x.contiguous(memory_format=torch.channels_last) for x in (content, style))
    if device.type == "cuda": torch.cuda.synchronize()
    start = time.perf_counter()
    with bf16_autocast(device, variant.startswith("bf16")):
        terms = step(content, style)
    optimizer.zero_grad(set_to_none=True)
    terms["total"].backward()
    optimizer.step()
    if device.type == "cuda": torch.cuda.synchronize()
    return time.perf_counter() - start


def compare_precision(method, args, net, device, content, style):
    steps = {v: make_step(method, args.loss, net, device, v) for v in args.variants}
    for v, (step, opt) in steps.items():                          # warm-up (and compilation)
        for _ in range(2): timed(step, opt, content, style, device, v)
    times = {v: [] for v in args.variants}
    for r in range(args.repeats):
        order = args.variants[r % len(args.variants):] + args.variants[:r % len(args.variants)]
        for v in order: times[v].append(timed(*steps[v], content, style, device, v))
    base = args.variants[0]
    cells = []
    for v in args.variants:
        speedups = [b / t for b, t in zip(times[base], times[v])]
        cells.append(f"{v} {statistics.median(times[v]):.3f} s" + ("" if v == base else f" (×{statistics.median(speedups):.2f}, "
                                                                                        f"{min(speedups):.2f}–{max(speedups):.2f})"))
    print(f"{method:8} " + " | ".join(cells), flush=True)


def compare_loss(method, args, net, device, content, style):
    variant = args.variants[0]
    steps = {loss: make_step(method, loss, net, device, variant) for loss in ("classic", "balanced")}
    for loss, (step, opt) in steps.items(): timed(step, opt, content, style, device, variant)
    times = {"classic": [], "balanced": []}
    for r in range(args.repeats):                                 # ABBA order: neither loss always runs first
        for loss in (("classic", "balanced") if r % 2 == 0 else ("balanced", "classic")):
            times[loss].append(timed(*steps[loss], content, style, device, variant))
    ratios = [b / c for c, b in zip(times["classic"], times["balanced"])]
    print(f"{method:8} classic {statistics.median(times['classic']):.3f} s | balanced {statistics.median(times['balanced']):.3f} s | "
          f"balanced/classic {statistics.median(ratios):.4f} ({min(ratios):.3f}–{max(ratios):.3f})", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--compare", choices=("precision", "loss"), default="precision")
    parser.add_argument("--variants", nargs="+", default=["fp32", "bf16", "bf16+cl"],
                        help="fp32 | bf16, each optionally +cl (channels-last) and +compile (torch.compile); the first is the baseline")
    parser.add_argument("--loss", choices=("classic", "balanced"), default="balanced")
    parser.add_argument("--methods", nargs="+", default=list(METHODS))
    args = parser.parse_args()
    if args.threads: torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    net = loss_network("vgg16", "default", tuple(dict.fromkeys((*PAPER_STYLE_LAYERS, PAPER_CONTENT_LAYER)))).to(device)
    gen = torch.Generator().manual_seed(0)
    content, style = (torch.rand(args.batch, 3, args.size, args.size, generator=gen).to(device) for _ in range(2))
    print(f"one training step, batch {args.batch} at {args.size}², {args.repeats} rotated runs, {torch.get_num_threads()} threads, "
          f"{torch.cuda.get_device_name(device) if device.type == 'cuda' else 'CPU'}, native bf16: {bf16_supported(device)}, "
          f"loss network {net.arch} ({net.weights}), {args.loss if args.compare == 'precision' else 'classic vs balanced'} loss")
    for method in args.methods:
        (compare_precision if args.compare == "precision" else compare_loss)(method, args, net, device, content, style)
        if device.type == "cuda": torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
