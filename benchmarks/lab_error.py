"""Measurement (not a test): paper B's VAE trained with its error term in scaled Lab (ours) and in raw Lab.

    .venv/bin/python benchmarks/lab_error.py [--scale cpu] [--seed 0] [--threads 2]

Eq 4's error ‖Dec(S(x), Enc(x)) − x‖² is summed over Lab channels. We feed the networks Lab scaled to about [−1, 1]
(L/50 − 1, a/110, b/110), so the error is 50² = 2,500 (L) and 110² = 12,100 (a, b) times smaller than in raw Lab,
and the KL term, unweighted in eq 4, weighs that much more. This trains the VAE stage both ways on the same style code
(`style_space(scale, stages=("vae",), lab_error=...)`: runs are reused when already trained) and prints, per run:
the 2% rule's kept content dimensions (what the GAN is given), the active units (dimensions whose posterior mean
varies over the images by more than 0.01, Burda et al.'s measure of a used latent), the KL in nats per image, and the
reconstruction error in raw Lab units (RMSE per channel, all dimensions kept), on the stage's evaluation images.
"""
import argparse

import torch

from balstyle.stylespace.nets import LAB_SCALE
from balstyle.stylespace.train import _evaluation_indices, _lab_images, encode_all, load_stage, portraits, style_space


@torch.no_grad()
def measure(run) -> dict:
    "Kept dimensions, active units, KL and raw-Lab RMSE per channel of the VAE stage in `run`."
    config, modules, info = load_stage(run)
    vae, normaliser = modules["vae"], modules["normaliser"]
    data = portraits(config)
    index = _evaluation_indices(data)
    lab = _lab_images(data, index, "cpu")
    S = load_stage(config.options["style_run"])[1]["S"]
    styles = normaliser(encode_all(lambda x: S(x)[:, :config.options["style_dims"]], data, index))
    mean, log_var = vae.encode(lab)
    kl = vae.kl(mean, log_var)
    error = (vae.decode(styles, mean) - lab).pow(2).mean((0, 2, 3)).sqrt() * torch.tensor(LAB_SCALE)
    return {"kept": info["kept_dims"], "active": int((mean.var(0) > 0.01).sum()), "dims": config.dims,
            "kl": float(kl.sum(1).mean()), "rmse": [round(float(e), 2) for e in error]}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"{'error term':10} {'kept dims':>9} {'active':>7} {'KL (nats)':>10} {'RMSE L, a, b (raw Lab)':>24}  run")
    for lab_error in ("scaled", "raw"):
        run = style_space(args.scale, seed=args.seed, stages=("vae",), lab_error=lab_error)["vae"]
        m = measure(run)
        print(f"{lab_error:10} {m['kept']:>5} of {m['dims']:<3} {m['active']:>5} {m['kl']:10.1f} {str(m['rmse']):>24}  {run.name}")


if __name__ == "__main__":
    main()
