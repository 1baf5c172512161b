"""Training reruns to the same bytes: two fresh processes, the same run settings, equal weight checksums."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent


@pytest.mark.parametrize("method", ["adain", "sanet"])
def test_two_fresh_processes_train_the_same_run_to_the_same_bytes(tmp_path, method):
    env = os.environ | {"TQDM_DISABLE": "1"}
    runs = []
    for name in ("first", "second"):
        out = tmp_path / name
        done = subprocess.run([str(BIN / "balstyle"), "train", method, "--loss", "balanced", "--scale", "smoke",
                               "--out", str(out)], capture_output=True, text=True, env=env, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
        runs.append(json.loads((out / "run.json").read_text()))
    assert runs[0]["weights"] == runs[1]["weights"]                    # every weight file, byte for byte
    assert runs[0]["final_losses"] == runs[1]["final_losses"]
    assert runs[0]["threads"] == runs[1]["threads"] == runs[0]["config"]["threads"] == 2    # the recorded thread count was used
