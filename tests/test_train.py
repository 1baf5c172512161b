"""The trainer: exact resume, signals, atomic checkpoints, DDP on gloo, and classic vs balanced runs."""
import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from balstyle.loop import TrainingInterrupted, batch_keys, load_checkpoint, save_atomic
from balstyle.transfer.train import Objective, TrainingStep, training_model, calibrate, run_config, train, training_images
from balstyle.features import PAPER_STYLE_LAYERS, loss_network

BIN = Path(sys.executable).parent


def weights(folder: Path) -> dict:
    "Every weight file of a finished run (`.pth` of the AST trainer, `.pt` of paper B's stages)."
    return {f.name: torch.load(f, weights_only=True) for f in sorted((folder / "weights").glob("*.pt*"))}


def assert_same_weights(a: dict, b: dict):
    assert a.keys() == b.keys()
    for name in a:
        assert a[name].keys() == b[name].keys()
        for k in a[name]: assert torch.equal(a[name][k], b[name][k]), (name, k)


def logged_steps(folder: Path) -> list[int]:
    with open(folder / "log.csv") as f: return [int(r["step"]) for r in csv.DictReader(f)]


@given(step=st.integers(0, 50), batch=st.sampled_from([2, 4, 6, 8]), n=st.integers(1, 30), world=st.sampled_from([1, 2]))
@settings(max_examples=60, deadline=None)
def test_ranks_share_exactly_the_global_batch(step, batch, n, world):
    whole = batch_keys(step, batch, n, seed=3)
    shares = [k for r in range(world) for k in batch_keys(step, batch, n, seed=3, rank=r, world=world)]
    assert sorted(shares) == sorted(whole) and all(0 <= i < n for i, _ in whole)


@given(n=st.integers(1, 25), batch=st.integers(1, 6))
@settings(max_examples=40, deadline=None)
def test_every_epoch_is_a_permutation(n, batch):
    positions = [i for t in range(n) for i, _ in batch_keys(t, batch, n, seed=1)]   # n·batch positions = `batch` epochs
    for e in range(batch): assert sorted(positions[e * n:(e + 1) * n]) == list(range(n))


def test_resume_after_an_interruption_is_bit_identical(tmp_path):
    whole = train("adain", "balanced", "smoke", out=tmp_path / "whole", steps=3, progress=False)
    with pytest.raises(TrainingInterrupted, match="at step 1"):
        train("adain", "balanced", "smoke", out=tmp_path / "part", steps=3, progress=False, stop_at=1)
    assert load_checkpoint(tmp_path / "part" / "checkpoint.pt")["step"] == 1 and not (tmp_path / "part" / "run.json").exists()
    part = train("adain", "balanced", "smoke", out=tmp_path / "part", steps=3, progress=False, resume=True)
    assert_same_weights(weights(whole), weights(part))
    assert logged_steps(part) == [1, 2, 3]
    a, b = (json.loads((f / "run.json").read_text()) for f in (whole, part))
    assert a["beta"] == b["beta"] and a["final_losses"] == b["final_losses"] and a["weights"] == b["weights"]


def test_resume_refuses_a_checkpoint_of_other_settings(tmp_path):
    with pytest.raises(TrainingInterrupted):
        train("adain", "classic", "smoke", out=tmp_path, steps=3, progress=False, stop_at=1)
    with pytest.raises(ValueError, match="other settings.*lr"):
        train("adain", "classic", "smoke", out=tmp_path, steps=3, lr=1e-3, progress=False, resume=True)


def _train_process(out: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([str(BIN / "balstyle"), "train", "adain", "--scale", "smoke", "--out", str(out), *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=os.environ | {"TQDM_DISABLE": "1"})


def _wait_for_steps(folder: Path, n: int, process: subprocess.Popen, timeout: float = 240):
    start = time.time()
    while time.time() - start < timeout:
        if (folder / "log.csv").is_file() and len(logged_steps(folder)) >= n: return
        if process.poll() is not None: raise AssertionError(f"training ended early: {process.communicate()}")
        time.sleep(0.2)
    raise AssertionError("training did not reach the step in time")


def test_sigterm_checkpoints_the_step_in_hand_and_resume_continues(tmp_path):
    process = _train_process(tmp_path, "--set", "steps=500", "--set", "checkpoint_every=1000")
    _wait_for_steps(tmp_path, 2, process)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGTERM and "SIGTERM" in err
    step = load_checkpoint(tmp_path / "checkpoint.pt")["step"]
    assert step == logged_steps(tmp_path)[-1] >= 2                 # nothing done was lost
    with pytest.raises(TrainingInterrupted):
        train("adain", "classic", "smoke", out=tmp_path, steps=500, checkpoint_every=1000, progress=False, resume=True, stop_at=step + 1)
    assert logged_steps(tmp_path) == list(range(1, step + 2))


def test_sigkill_loses_only_the_steps_since_the_last_checkpoint(tmp_path):
    process = _train_process(tmp_path, "--set", "steps=500", "--set", "checkpoint_every=2")
    _wait_for_steps(tmp_path, 3, process)
    process.kill(); process.communicate()
    step = load_checkpoint(tmp_path / "checkpoint.pt")["step"]
    # at most checkpoint_every steps are lost: equal when the kill lands while the next checkpoint is being written
    assert step % 2 == 0 and step >= 2 and logged_steps(tmp_path)[-1] - step <= 2
    with pytest.raises(TrainingInterrupted):
        train("adain", "classic", "smoke", out=tmp_path, steps=500, checkpoint_every=2, progress=False, resume=True, stop_at=step + 1)
    assert logged_steps(tmp_path) == list(range(1, step + 2))      # the log was cut back to the checkpoint, then went on


def test_sigkill_during_a_checkpoint_write_leaves_the_previous_checkpoint(tmp_path):
    path = tmp_path / "checkpoint.pt"
    save_atomic({"step": 1, "w": torch.arange(5.0)}, path)
    writer = subprocess.Popen([sys.executable, "-c",
                               "import sys, torch\nfrom balstyle.loop import save_atomic\n"
                               "save_atomic({'step': 2, 'w': torch.zeros(400_000_000, dtype=torch.uint8)}, sys.argv[1])", str(path)])
    start = time.time()
    while not list(tmp_path.glob(".checkpoint.pt.tmp-*")):
        assert writer.poll() is None and time.time() - start < 120, "the writer finished or never started its temporary file"
        time.sleep(0.01)
    writer.kill(); writer.wait()
    back = load_checkpoint(path)
    assert back["step"] == 1 and torch.equal(back["w"], torch.arange(5.0))


def test_two_gloo_processes_match_one_process_on_the_same_global_batch(tmp_path):
    # fp32 and one thread per process: bf16's rounding and the thread count would make the per-rank split differ in more than summation order
    common = ["adain", "--loss", "balanced", "--scale", "smoke", "--set", "steps=2", "--set", "batch_size=4", "--set", "threads=1", "--no-bf16"]
    env = os.environ | {"TQDM_DISABLE": "1", "OMP_NUM_THREADS": "1"}
    ddp = subprocess.run([str(BIN / "torchrun"), "--standalone", "--nproc_per_node", "2", "-m", "balstyle.transfer.train", *common,
                          "--out", str(tmp_path / "ddp")], capture_output=True, text=True, env=env, timeout=600)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    one = subprocess.run([str(BIN / "balstyle"), "train", *common, "--out", str(tmp_path / "one")],
                         capture_output=True, text=True, env=env, timeout=600)
    assert one.returncode == 0, one.stderr[-3000:]
    (ddp_log, one_log) = (list(csv.DictReader(open(tmp_path / f / "log.csv"))) for f in ("ddp", "one"))
    for r1, r2 in zip(ddp_log, one_log):                            # the global batch's terms, step by step
        for k in ("content", "style", "total"): assert float(r1[k]) == pytest.approx(float(r2[k]), rel=1e-4), (r1["step"], k)
    torch.manual_seed(0)
    start = training_model(run_config("adain", "balanced", "smoke", steps=2, batch_size=4)).decoder.state_dict()
    a, b = weights(tmp_path / "ddp")["decoder.pth"], weights(tmp_path / "one")["decoder.pth"]
    moved = torch.cat([(b[k] - start[k]).flatten() for k in b])
    differ = torch.cat([(a[k] - b[k]).flatten() for k in b])
    assert moved.norm() > 0 and differ.norm() < 1e-2 * moved.norm()   # the same update, to float summation order
    assert json.loads((tmp_path / "ddp" / "run.json").read_text())["beta"] == pytest.approx(
        json.loads((tmp_path / "one" / "run.json").read_text())["beta"])


def test_classic_and_balanced_runs_differ_only_in_the_style_term():
    classic, balanced = run_config("sanet", "classic", "smoke", decoder_init=None), run_config("sanet", "balanced", "smoke", decoder_init=None)
    assert {k for k, v in vars(classic).items() if vars(balanced)[k] != v} == {"loss"}
    content, style, _ = training_images(classic)
    c = torch.stack([content[k] for k in batch_keys(0, 2, len(content))])
    s = torch.stack([style[k] for k in batch_keys(0, 2, len(style), stream=1)])
    net = loss_network("vgg16", "default", PAPER_STYLE_LAYERS)
    terms, kappas = {}, {}
    for config in (classic, balanced):
        torch.manual_seed(0)
        step = TrainingStep("sanet", training_model(config), Objective(config.loss, net, 1.0, 1.0, config.extra_weights))
        beta, kappa, calibration = calibrate(step, content, style, config, "cpu")
        assert beta * calibration["style"] == pytest.approx(calibration["content"])       # β balances the two terms
        own = calibration["reference_content"] + 3.0 * calibration["reference_style"]          # SANet's reference weights 1 and 3
        assert kappa * own == pytest.approx(2 * calibration["content"])                         # κ: our content + style over the reference's
        step.objective.beta, kappas[config.loss] = beta, kappa
        with torch.no_grad(): terms[config.loss] = (beta, step(c, s))
    (b1, t1), (b2, t2) = terms["classic"], terms["balanced"]
    assert kappas["classic"] == pytest.approx(kappas["balanced"])                            # κ does not depend on the style loss
    for k in ("content", "identity1", "identity2"): assert torch.equal(t1[k], t2[k]), k
    assert t1["style"] > 1e3 and 0 < t2["style"] <= len(PAPER_STYLE_LAYERS)                 # eq 8 vs eq 13: each layer in [0, 1]
    rest = t1["content"] + 50 * t1["identity1"] + t1["identity2"]
    assert t1["total"] - b1 * t1["style"] == pytest.approx(rest.item(), rel=1e-5)
    assert t2["total"] - b2 * t2["style"] == pytest.approx(rest.item(), rel=1e-5)


def test_bad_settings_get_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="method must be one of"): run_config("wct")
    with pytest.raises(ValueError, match="content_data"): run_config("adain", scale="paper")
    with pytest.raises(FileNotFoundError, match="nowhere"):
        train("adain", "classic", "paper", content_data=str(tmp_path / "nowhere"), style_data=str(tmp_path), out=tmp_path / "r")
    result = subprocess.run([str(BIN / "balstyle"), "train", "adain", "--set", "stepz=3"], capture_output=True, text=True)
    assert result.returncode == 2 and "stepz" in result.stderr


@pytest.mark.parametrize("method", ["magenta", "adain", "linear", "sanet"])
def test_a_bf16_step_on_the_cpu_matches_fp32(method):
    "One training step under the CPU's bf16 autocast: finite terms and gradients, each within bf16's tolerance of fp32's."
    from balstyle.core import bf16_autocast, bf16_supported
    if not bf16_supported("cpu"): pytest.skip("this CPU has no native bf16 (AVX512-BF16): the trainer runs fp32 here")
    config = run_config(method, "balanced", "smoke", decoder_init=None)
    content, style, _ = training_images(config)
    c = torch.stack([content[k] for k in batch_keys(0, 2, len(content))]).contiguous(memory_format=torch.channels_last)
    s = torch.stack([style[k] for k in batch_keys(0, 2, len(style), stream=1)]).contiguous(memory_format=torch.channels_last)
    net = loss_network("vgg16", "default", PAPER_STYLE_LAYERS)
    results = {}
    for bf16 in (False, True):
        torch.manual_seed(0)
        step = TrainingStep(method, training_model(config), Objective("balanced", net, 1e5, 1.0, config.extra_weights))
        step = step.to(memory_format=torch.channels_last)
        with bf16_autocast("cpu", bf16): terms = step(c, s)
        terms["total"].backward()
        grads = torch.cat([p.grad.flatten() for p in step.parameters() if p.grad is not None])
        results[bf16] = ({k: v.item() for k, v in terms.items()}, grads)
    (t32, g32), (t16, g16) = results[False], results[True]
    assert all(torch.isfinite(torch.tensor(v)) for v in t16.values()) and torch.isfinite(g16).all()
    for k in t32: assert t16[k] == pytest.approx(t32[k], rel=0.05), k              # bf16 keeps 8 bits of mantissa
    assert torch.nn.functional.cosine_similarity(g16, g32, dim=0) > 0.95           # the same descent direction
