"""Faults around `balstyle reproduce` and atomic writes: two runs at once, a run killed with SIGKILL, a full disk."""
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from balstyle.loop import save_atomic

PYTHON = sys.executable

TOY = """
import sys, nbformat
from pathlib import Path
from balstyle import runner
from balstyle.runner import SCALES, Study, reproduce
folder = Path(sys.argv[1])
runner.studies_dir = lambda: folder / "studies"
runner.STUDIES = {"slow": Study("slow", "slow.ipynb", "a table, slowly", {s: {} for s in SCALES})}
outcomes = reproduce("smoke", figures=folder / "figures", runs=folder / "runs")
print("ok" if all(o.ok for o in outcomes) else "failed")
"""

SLOW = ("import time, pandas as pd\nfrom balstyle.runner import save_table, save_figure\nimport matplotlib.pyplot as plt\n"
        "save_table(pd.DataFrame({'n': range(1000)}), 'toy/slow', scale=scale, weights='none', data='none', title='a table')\n"
        "fig, ax = plt.subplots(); ax.plot([0, 1])\nsave_figure(fig, 'toy/slow', scale=scale, weights='none', data='none', title='a line')\n"
        "time.sleep(seconds)")


def toy_folder(tmp_path: Path, seconds: float) -> Path:
    import nbformat
    studies = tmp_path / "studies"; studies.mkdir(parents=True)
    params = nbformat.v4.new_code_cell(f"scale = 'smoke'\nseconds = {seconds}"); params.metadata["tags"] = ["parameters"]
    nbformat.write(nbformat.v4.new_notebook(cells=[params, nbformat.v4.new_code_cell(SLOW)],
                                            metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}),
                   studies / "slow.ipynb")
    (tmp_path / "toy.py").write_text(TOY)
    return tmp_path


def start(folder: Path) -> subprocess.Popen:
    return subprocess.Popen([PYTHON, str(folder / "toy.py"), str(folder)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=os.environ | {"TQDM_DISABLE": "1"}, start_new_session=True)


def whole(folder: Path):
    "Every figure, table, provenance record and the index parse, and no temporary file is left."
    figures = folder / "figures"
    assert (figures / "toy" / "slow_smoke.csv").read_text().count("\n") == 1001
    from PIL import Image
    Image.open(figures / "toy" / "slow_smoke.png").verify()
    for prov in (figures / "_provenance").rglob("*.json"): json.loads(prov.read_text())
    index = (figures / "README.md").read_text()
    assert index.count("toy/slow_smoke.csv](") == 1 and index.count("toy/slow_smoke.png](") == 1
    assert not list(folder.rglob(".*.tmp-*")) and not list(folder.rglob(".*.partial-*.ipynb"))
    json.loads((folder / "runs" / "smoke" / "status.json").read_text())


def test_two_runs_of_one_study_at_once_wait_for_each_other_and_leave_everything_whole(tmp_path):
    folder = toy_folder(tmp_path, 12)
    first = start(folder)
    deadline = time.time() + 120                                      # the first holds the study's lock once its executed copy is being written
    while time.time() < deadline and not list((folder / "runs" / "smoke").glob(".slow.partial-*.ipynb")): time.sleep(0.1)
    second = start(folder)
    out = [p.communicate(timeout=240) for p in (first, second)]
    assert [o[0].strip().splitlines()[-1] for o in out] == ["ok", "ok"], out
    assert "running in another process: waiting" in out[1][1], out[1][1]
    whole(folder)


def test_a_run_killed_mid_study_leaves_the_last_good_files_and_the_rerun_recovers(tmp_path):
    folder = toy_folder(tmp_path, 0)
    assert start(folder).communicate(timeout=240)[0].strip().endswith("ok")
    executed = (folder / "runs" / "smoke" / "slow.ipynb").read_text()
    (folder / "studies" / "slow.ipynb").write_text((folder / "studies" / "slow.ipynb").read_text().replace("seconds = 0", "seconds = 60"))
    victim = start(folder)
    deadline = time.time() + 120
    while time.time() < deadline and not list((folder / "runs" / "smoke").glob(".slow.partial-*.ipynb")): time.sleep(0.2)
    time.sleep(4)                                                     # inside the sleeping cell
    os.killpg(victim.pid, signal.SIGKILL); victim.wait()
    assert (folder / "runs" / "smoke" / "slow.ipynb").read_text() == executed   # the last good executed copy, not the partial one
    whole_but_partial = list((folder / "runs" / "smoke").glob(".slow.partial-*.ipynb"))
    assert whole_but_partial                                            # the killed run's partial copy, hidden beside it
    from balstyle.runner import _said, read_status
    assert _said(read_status(folder / "runs" / "smoke" / "status.json")["slow"], None).startswith("KILLED in the run started")
    (folder / "studies" / "slow.ipynb").write_text((folder / "studies" / "slow.ipynb").read_text().replace("seconds = 60", "seconds = 0"))
    assert start(folder).communicate(timeout=240)[0].strip().endswith("ok")
    whole(folder)


def test_a_full_disk_during_a_checkpoint_keeps_the_previous_one_and_names_the_path(tmp_path):
    path = tmp_path / "checkpoint.pt"
    save_atomic({"w": torch.ones(10)}, path)
    script = textwrap.dedent(f"""
        import resource, signal, torch
        from balstyle.loop import save_atomic, write_atomic
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (50_000, 50_000))
        for write in (lambda: save_atomic({{"w": torch.zeros(100_000)}}, {str(path)!r}),
                      lambda: write_atomic({str(path)!r}, lambda f: f.write(b"x" * 100_000))):
            try: write(); print("no error")
            except OSError as e: print("OSError:", e)
    """)
    out = subprocess.run([PYTHON, "-c", script], capture_output=True, text=True, timeout=120)
    lines = out.stdout.strip().splitlines()
    assert len(lines) == 2 and all(l.startswith("OSError:") and str(path) in l for l in lines), out
    assert torch.equal(torch.load(path, weights_only=True)["w"], torch.ones(10))      # the previous checkpoint, intact
    assert not list(tmp_path.glob(".*.tmp-*"))


def test_a_corrupt_status_file_is_named_and_rebuilt(tmp_path, caplog):
    from balstyle.runner import _write_status, study_status
    runs = tmp_path / "runs"; (runs / "smoke").mkdir(parents=True)
    (runs / "smoke" / "status.json").write_text('{"table4": {"ok": tr')               # torn by a writer that died
    rows = study_status(runs)                                                        # no traceback: every study, never run
    assert len(rows) > 1 and str(runs / "smoke" / "status.json") in caplog.text
    _write_status(runs / "smoke", "table4", ok=True, error="", wall_time_s=1.0, date="2026-11-25T00:00:00", artefacts=[])
    assert json.loads((runs / "smoke" / "status.json").read_text())["table4"]["ok"] is True
