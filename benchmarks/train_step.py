"""Benchmark (not a test): median training-step time per AST method, classic against balanced style loss.

    .venv/bin/python benchmarks/train_step.py [--size 256] [--batch 8] [--repeats 5] [--device cpu|cuda] [--bf16]

One step = the method's forward passes, the loss network on pastiche, content and style, every loss term, backward
and Adam, exactly as `balstyle.transfer.train` runs it. Classic and balanced steps alternate, so both see the same machine
state; the table gives each one's median and the median of the paired ratios balanced / classic.
"""
import argparse
import statistics
import time

import torch

from balstyle.features import PAPER_CONTENT_LAYER, PAPER_STYLE_LAYERS, loss_network
from balstyle.transfer.methods import METHODS
from balstyle.transfer.train import Objective, TrainingStep, training_model, run_config


def make_step(method: str, loss: str, net, device, channels_last: bool):
    config = run_config(method, loss, "smoke", decoder_init=None)
    torch.manual_seed(0)
    step = TrainingStep(method, training_model(config), Objective(loss, net, 1.0, 1.0, config.extra_weights)).to(device)
    if channels_last: step = step.to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam([p for p in step.parameters() if p.requires_grad], lr=1e-4)
    return step, optimizer


def timed(step, optimizer, content, style, device, bf16: bool) -> float:
    if device.type == "cuda": torch.cuda.synchronize()
    start = time.perf_counter()
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
        terms = step(content, style)
    optimizer.zero_grad(set_to_none=True)
    terms["total"].backward()
    optimizer.step()
    if device.type == "cuda": torch.cuda.synchronize()
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast (CUDA), losses in float32")
    parser.add_argument("--methods", nargs="+", default=list(METHODS))
    args = parser.parse_args()
    if args.threads: torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    net = loss_network("vgg16", "default", tuple(dict.fromkeys((*PAPER_STYLE_LAYERS, PAPER_CONTENT_LAYER)))).to(device)
    gen = torch.Generator().manual_seed(0)
    content, style = (torch.rand(args.batch, 3, args.size, args.size, generator=gen).to(device) for _ in range(2))
    if cuda: content, style = (x.contiguous(memory_format=torch.channels_last) for x in (content, style))
    print(f"one training step, batch {args.batch} at {args.size}², {args.repeats} paired runs, {torch.get_num_threads()} threads, "
          f"{torch.cuda.get_device_name(device) if cuda else 'CPU'}, {'bf16 autocast' if args.bf16 else 'fp32'}, "
          f"loss network {net.arch} ({net.weights})")
    print(f"{'method':8} {'classic s':>10} {'balanced s':>11} {'balanced/classic':>17} {'ratio range':>15}")
    for method in args.methods:
        steps = {loss: make_step(method, loss, net, device, cuda) for loss in ("classic", "balanced")}
        for loss, (step, opt) in steps.items(): timed(step, opt, content, style, device, args.bf16)   # warm-up
        times = {"classic": [], "balanced": []}
        for r in range(args.repeats):                      # ABBA order: neither loss always runs first
            for loss in (("classic", "balanced") if r % 2 == 0 else ("balanced", "classic")):
                times[loss].append(timed(*steps[loss], content, style, device, args.bf16))
        ratios = [b / c for c, b in zip(times["classic"], times["balanced"])]
        print(f"{method:8} {statistics.median(times['classic']):10.3f} {statistics.median(times['balanced']):11.3f} "
              f"{statistics.median(ratios):17.4f} {min(ratios):7.3f}–{max(ratios):.3f}", flush=True)
        del steps
        if cuda: torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
