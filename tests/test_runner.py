"""The study runner: registry against notebooks, refusals, failures that do not stop the run."""
import json
import subprocess
import sys
from pathlib import Path

import nbformat
import papermill
import pytest

import balstyle.runner as runner
from balstyle.cli import main
from balstyle.runner import SCALES, STUDIES, Study, reproduce, run_notebook, studies_dir, write_index

KERNEL = {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"}}


def notebook(path, *sources, parameters=None):
    cells = []
    if parameters is not None:
        cell = nbformat.v4.new_code_cell(parameters); cell.metadata["tags"] = ["parameters"]; cells.append(cell)
    cells += [nbformat.v4.new_code_cell(s) for s in sources]
    nb = nbformat.v4.new_notebook(cells=cells); nb.metadata = KERNEL
    nbformat.write(nb, path)
    return path


def test_every_study_notebook_is_registered_and_every_preset_sets_every_parameter():
    on_disk = {p.name for p in studies_dir().glob("*.ipynb")}
    registered = {s.notebook for s in STUDIES.values()}
    assert on_disk == registered, f"unregistered: {on_disk - registered}; missing: {registered - on_disk}"
    for study in STUDIES.values():
        declared = papermill.inspect_notebook(str(studies_dir() / study.notebook))
        assert declared, f"{study.notebook} has no cell tagged 'parameters'"
        assert set(study.presets) == set(SCALES), study.name
        for scale in SCALES:
            assert set(study.parameters(scale)) == set(declared), (study.name, scale, set(declared) ^ set(study.parameters(scale)))
        defaults = {k: eval(v["default"]) for k, v in declared.items()}
        assert defaults == study.parameters("smoke"), f"{study.notebook}: its defaults must be the smoke preset"


def test_a_notebook_without_parameters_is_refused(tmp_path):
    nb = notebook(tmp_path / "bare.ipynb", "open('ran', 'w').write('yes')")
    outcome = run_notebook(nb, {"scale": "cpu"}, tmp_path / "out" / "bare.ipynb")
    assert not outcome.ok and "parameters" in outcome.error
    assert not (tmp_path / "ran").exists()


def test_unknown_parameters_are_refused(tmp_path):
    nb = notebook(tmp_path / "p.ipynb", "x", parameters="x = 1")
    outcome = run_notebook(nb, {"y": 2}, tmp_path / "out.ipynb")
    assert not outcome.ok and "['y']" in outcome.error


@pytest.fixture
def toy_studies(tmp_path, monkeypatch):
    "A failing study followed by a good one that saves a table."
    folder = tmp_path / "studies"; folder.mkdir()
    notebook(folder / "fails.ipynb", "a = 1", "raise RuntimeError('deliberate failure in cell two')", parameters="scale = 'smoke'")
    notebook(folder / "works.ipynb",
             "import pandas as pd\nfrom balstyle.runner import save_table\n"
             "save_table(pd.DataFrame({'n': [n]}), 'toy/works', scale=scale, weights='none', data='none', title='toy table')",
             parameters="scale = 'smoke'\nn = 1")
    studies = {"fails": Study("fails", "fails.ipynb", "nothing", {s: {} for s in SCALES}),
               "works": Study("works", "works.ipynb", "a table", {s: {"n": 2} for s in SCALES})}
    monkeypatch.setattr(runner, "STUDIES", studies)
    monkeypatch.setattr(runner, "studies_dir", lambda: folder)
    return tmp_path


def test_the_runner_carries_on_after_a_failure_and_names_the_cell(toy_studies):
    figures, runs = toy_studies / "figures", toy_studies / "runs"
    outcomes = reproduce("smoke", figures=figures, runs=runs)
    failed, done = outcomes
    assert not failed.ok and "cell 3" in failed.error and "deliberate failure" in failed.error and "raise RuntimeError" in failed.error
    assert done.ok and (figures / "toy" / "works_smoke.csv").read_text().splitlines()[1] == "0,2"
    assert (runs / "smoke" / "works.ipynb").exists() and (runs / "smoke" / "fails.ipynb").exists()
    index = (figures / "README.md").read_text()
    assert "toy/works_smoke.csv" in index and "works.ipynb" in index and " s |" in index
    status = json.loads((runs / "smoke" / "status.json").read_text())
    assert status["fails"]["ok"] is False and status["works"]["ok"] is True


def test_the_command_exits_non_zero_naming_each_failed_notebook(toy_studies, capsys):
    code = main(["reproduce", "--scale", "cpu", "--figures", str(toy_studies / "f"), "--runs", str(toy_studies / "r"), "-p", "n=3"])
    err = capsys.readouterr().err
    assert code == 1 and "fails.ipynb" in err and "cell 3" in err and "works.ipynb" not in err
    assert main(["reproduce", "--scale", "smoke", "-p", "nosuch=1"]) == 2 and "nosuch" in capsys.readouterr().err


def test_a_rerun_removes_what_its_notebook_no_longer_writes(toy_studies, capsys):
    "Files named after what a run found (Figures 4-5's style dimensions) do not outlive the run that made them."
    folder, figures, runs = toy_studies / "studies", toy_studies / "figures", toy_studies / "runs"
    notebook(folder / "named.ipynb", "import pandas as pd\nfrom balstyle.runner import save_table\n"
             "save_table(pd.DataFrame({'n': [n]}), f'toy/dim{n}', scale=scale, weights='none', data='none', title='toy')",
             parameters="scale = 'smoke'\nn = 1")
    runner.STUDIES["named"] = Study("named", "named.ipynb", "a table named after n", {s: {"n": 1} for s in SCALES})
    assert all(o.ok for o in reproduce("smoke", only=["works", "named"], parameters={"n": 3}, figures=figures, runs=runs))
    assert (figures / "toy" / "dim3_smoke.csv").exists() and (figures / "toy" / "works_smoke.csv").exists()
    capsys.readouterr()
    args = ["reproduce", "--scale", "smoke", "--figures", str(figures), "--runs", str(runs), "-p", "n=4"]
    assert main(args) == 1                                     # the toy "fails" study fails, as it should; the others ran
    assert f"{figures / 'toy' / 'dim3_smoke.csv'}: removed" in capsys.readouterr().out
    assert not (figures / "toy" / "dim3_smoke.csv").exists() and not (figures / "_provenance" / "toy" / "dim3_smoke.csv.json").exists()
    assert (figures / "toy" / "dim4_smoke.csv").exists() and (figures / "toy" / "works_smoke.csv").exists()   # another notebook's: kept
    index = (figures / "README.md").read_text()
    assert "toy/dim4_smoke.csv" in index and "toy/dim3_smoke.csv" not in index


def test_index_lists_only_files_that_exist(tmp_path, monkeypatch):
    monkeypatch.setenv("BALSTYLE_FIGURES", str(tmp_path))
    import pandas as pd
    path = runner.save_table(pd.DataFrame({"a": [1]}), "t/x", scale="cpu", weights="w", data="d", title="x")
    assert "t/x_cpu.csv" in write_index(tmp_path).read_text()
    path.unlink()
    assert "t/x_cpu.csv" not in write_index(tmp_path).read_text()


def test_every_study_runs_at_smoke_scale_through_the_command(tmp_path):
    "The whole `smoke` reproduction, as CI runs it: every registered study notebook end to end."
    figures, runs = tmp_path / "figures", tmp_path / "runs"
    command = Path(sys.executable).parent / "balstyle"       # the console script, as a user runs it
    result = subprocess.run([str(command), "reproduce", "--scale", "smoke",
                             "--figures", str(figures), "--runs", str(runs)], capture_output=True, text=True, timeout=2400)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert f"executed copies in {runs / 'smoke'}, figures and tables indexed in {figures / 'README.md'}" in result.stdout.splitlines()[-1]
    assert f"study3: ok in" in result.stdout and f"executed copy {runs / 'smoke' / 'study3_loss_vs_supremum.ipynb'}" in result.stdout
    index = (figures / "README.md").read_text()
    status = json.loads((runs / "smoke" / "status.json").read_text())
    assert set(status) == set(STUDIES) and all(s["ok"] and s["artefacts"] for s in status.values())
    for s in status.values():
        for artefact in s["artefacts"]:
            assert artefact.endswith(("_smoke.png", "_smoke.csv")) and artefact.split("figures/")[-1] in index
