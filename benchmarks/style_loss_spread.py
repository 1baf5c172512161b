"""Measurement (not a test): how far apart the classic style losses of different styles lie, on a scale's paintings.

    .venv/bin/python benchmarks/style_loss_spread.py [--scale cpu] [--pairs 160] [--size 128] [--threads 2]

Paper A (section 4.1) says the classic style losses of different style images "can differ by more than 1,000 times
for both randomly initialized and fully trained AST models": the spread that makes eq 8's equal task weights unfair.
This draws `--pairs` training paintings of the scale's stand-in painters (or `--styles DIR`, a Painter by Numbers
folder) and as many content images, and prints, per style, the classic loss (eq 6 summed over paper A's four layers
of the loss network) of two pastiches: the content image itself (a model that has learnt nothing) and an untrained
AdaIN's; then the ratio of the largest to the smallest and of the 95th to the 5th percentile. A stand-in set whose
ratios lie far below the paper's cannot show the balanced loss's effect, whatever the training budget.
"""
import argparse

import numpy as np
import torch
import torchvision.transforms.v2.functional as TF

from balstyle.data import coco_images, painter_by_numbers, to_tensor_transform
from balstyle.features import PAPER_STYLE_LAYERS, loss_network
from balstyle.standins.synth import synth_dataset
from balstyle.transfer.adain import AdaIN
from balstyle.transfer.losses import classic_style_loss


def square(image, size: int) -> torch.Tensor:
    "The central `size`² crop of the image resized to `size` on its shorter side."
    image = image[0] if isinstance(image, tuple) else image
    return TF.center_crop(TF.resize(image, size, antialias=True), size)


def spread(losses: torch.Tensor) -> str:
    v = losses.double()
    p5, p50, p95 = torch.quantile(v, torch.tensor([0.05, 0.5, 0.95], dtype=torch.float64)).tolist()
    return f"max/min {(v.max() / v.min()).item():8.1f}   p95/p5 {p95 / p5:6.1f}   median {p50:.3g}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", default="cpu", choices=("smoke", "cpu"))
    parser.add_argument("--styles", help="a Painter by Numbers folder instead of the stand-in painters")
    parser.add_argument("--pairs", type=int, default=160)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    plain = dict(transform=to_tensor_transform())
    styles = painter_by_numbers(args.styles or synth_dataset("painters", args.scale, 0), "train", **plain)
    contents = coco_images(synth_dataset("content", args.scale, 0), **plain)
    rng = np.random.default_rng(args.seed)
    n = min(args.pairs, len(styles), len(contents))
    s = torch.stack([square(styles[int(i)], args.size) for i in rng.choice(len(styles), n, replace=False)])
    c = torch.stack([square(contents[int(i)], args.size) for i in rng.choice(len(contents), n, replace=False)])
    net = loss_network("vgg16", "default", PAPER_STYLE_LAYERS)
    torch.manual_seed(args.seed)
    adain = AdaIN().eval()
    with torch.no_grad():
        target = net(s)
        pastiches = {"content as pastiche": c, "untrained AdaIN": torch.cat([adain.stylize(c[i:i + 16], s[i:i + 16]) for i in range(0, n, 16)])}
        print(f"{n} styles ({args.styles or f'stand-in painters, {args.scale}'}), {args.size} px, loss network {net.arch} ({net.weights})")
        for name, p in pastiches.items():
            print(f"{name:20} {spread(classic_style_loss(net(p), target, reduction='none').sum(1))}")
    print("paper A, section 4.1: more than 1,000 times")


if __name__ == "__main__":
    main()
