"""What a new user and an adversarial one hit (issue 24): untrained models, run folders reused, resumed or restarted,
arguments refused by name, weights files that are not plain state dicts, and what `list` and `--help` say."""
import json
import os
import pathlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from balstyle.cli import main
from balstyle.loop import TrainingInterrupted, load_checkpoint
from balstyle.runner import study_status
from balstyle.transfer.train import train

BIN = Path(sys.executable).parent


def image_file(path, seed=0):
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(path)
    return str(path)


def balstyle(*args, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "balstyle"), *map(str, args)], capture_output=True, text=True, timeout=timeout,
                          env=os.environ | {"TQDM_DISABLE": "1"})


def refused(result: subprocess.CompletedProcess, *said: str):
    "Exit status 2, no traceback, and every phrase of `said` on stderr."
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    for phrase in said: assert phrase in result.stderr, (phrase, result.stderr)


def test_stylize_refuses_a_model_with_untrained_parts_unless_asked(tmp_path):
    c, s, out = image_file(tmp_path / "c.png"), image_file(tmp_path / "s.png", 1), tmp_path / "p.png"
    refused(balstyle("stylize", c, s, "-o", out, "--method", "sanet", "--size", "32", "--device", "cpu"),
            "sanet has no weights for its trained transform and decoder", "--weights transform=transformer.pth --weights decoder=decoder.pth",
            "balstyle train sanet", "--allow-untrained")
    assert not out.exists()
    demo = balstyle("stylize", c, s, "-o", out, "--method", "sanet", "--size", "32", "--device", "cpu", "--allow-untrained")
    assert demo.returncode == 0 and out.is_file(), demo.stderr


def test_a_finished_run_is_reused_an_unfinished_one_refused_and_restart_starts_over(tmp_path):
    done = train("adain", "classic", "smoke", out=tmp_path / "done", progress=False)
    before = {name: (done / name).read_bytes() for name in ("run.json", "log.csv", "weights/decoder.pth")}
    again = balstyle("train", "adain", "--scale", "smoke", "--out", done)                       # no --resume, no --restart
    assert again.returncode == 0 and again.stdout.strip() == str(done), again.stderr
    assert {name: (done / name).read_bytes() for name in before} == before                      # reused: nothing rewritten
    refused(balstyle("train", "adain", "--scale", "smoke", "--out", done, "--set", "steps=3"), "finished run of other settings (['steps'])")

    with pytest.raises(TrainingInterrupted): train("adain", "classic", "smoke", out=tmp_path / "half", steps=3, progress=False, stop_at=1)
    checkpoint = (tmp_path / "half" / "checkpoint.pt").read_bytes()
    refused(balstyle("train", "adain", "--scale", "smoke", "--out", tmp_path / "half", "--set", "steps=3"),
            "unfinished run (checkpointed at step 1)", "--resume", "--restart")
    assert (tmp_path / "half" / "checkpoint.pt").read_bytes() == checkpoint                   # refused: untouched
    refused(balstyle("train", "adain", "--resume", "--restart"), "not allowed with argument")

    with pytest.raises(TrainingInterrupted):                                                   # a restart killed after one step
        train("adain", "classic", "smoke", out=done, steps=3, progress=False, restart=True, stop_at=1)
    assert not (done / "run.json").exists() and load_checkpoint(done / "checkpoint.pt")["step"] == 1   # unfinished, not half-old
    restarted = balstyle("train", "adain", "--scale", "smoke", "--out", done, "--set", "steps=3", "--restart")
    assert restarted.returncode == 0, restarted.stderr
    run = json.loads((done / "run.json").read_text())
    assert run["steps"] == 3 and [r.split(",")[0] for r in (done / "log.csv").read_text().splitlines()[1:]] == ["1", "2", "3"]


def test_bad_arguments_are_usage_errors_that_name_the_argument(tmp_path, capsys):
    refused(balstyle("train", "adain", "--scale", "smoke", "--set", "steps=abc"), "argument --set: steps must be a whole number ≥ 1, not 'abc'")
    cases = [(["train", "adain", "--set", "batch_size=0"], "argument --set: batch_size must be a whole number ≥ 1, not 0"),
             (["train", "adain", "--set", "precision=fp16"], "precision must be one of 'bf16', 'fp32'"),
             (["train", "adain", "--set", "stepz=3"], "unknown settings ['stepz']"),
             (["train", "adain", "--device", "bogus"], "argument --device: 'bogus' is not a device"),
             (["stylize", "c.png", "s.png", "-o", "p.png", "--device", "tpu"], "argument --device: 'tpu' is not a device")]
    if not torch.cuda.is_available(): cases.append((["train", "adain", "--device", "cuda"], "this machine has no CUDA GPU"))
    for argv, said in cases:
        with pytest.raises(SystemExit) as e: main(argv)
        err = capsys.readouterr().err
        assert e.value.code == 2 and said in err, (argv, err)
    assert main(["train", "adain", "--scale", "paper", "--content-data", str(tmp_path / "coco"), "--style-data", str(tmp_path)]) == 2
    assert f"content_data: no folder {tmp_path / 'coco'}" in capsys.readouterr().err       # before the reconstruction stage trains


def test_weights_files_that_are_not_plain_state_dicts_get_our_own_errors(tmp_path):
    c, s = image_file(tmp_path / "c.png"), image_file(tmp_path / "s.png", 1)
    torch.save({"0.weight": torch.zeros(1), "made_by": pathlib.PurePosixPath("/home/someone")}, tmp_path / "objects.pth")
    (tmp_path / "empty.npz").touch()
    result = balstyle("stylize", c, s, "-o", tmp_path / "p.png", "--size", "32", "--weights", f"decoder={tmp_path / 'objects.pth'}")
    refused(result, "objects.pth is not a plain weights file", "PurePosixPath", "never load an untrusted pickle")
    assert "weights_only" not in result.stderr                                               # no advice to load it unsafely
    refused(balstyle("stylize", c, s, "-o", tmp_path / "p.png", "--size", "32", "--method", "magenta", "--weights", f"tf={tmp_path / 'empty.npz'}"),
            "empty.npz is empty (0 bytes)")


def test_list_on_a_fresh_clone_names_the_committed_figures_and_help_shows_defaults(tmp_path, capsys):
    rows = {r["study"]: r for r in study_status(tmp_path / "no-runs-here")}
    assert rows["study3"]["cpu"].startswith("committed figures from 2026-") and rows["study3"]["cpu"].endswith("not run here")
    assert rows["study3"]["paper"] == "never run"
    with pytest.raises(SystemExit): main(["train", "--help"])
    help_text = capsys.readouterr().out
    assert "(default: cpu)" in help_text and "--restart" in help_text
