"""The static report (balstyle.report): pages that load nothing from the network, links and images that resolve, every
registered study on the index, the papers' numbers beside ours, and the index in a real headless browser."""
import ast
import html
import re
import struct

import nbformat
import pandas as pd
import pytest

from balstyle.report import (ARTEFACTS, WIDTHS, OurTable, browser_missing, build_report, check_site, compare_figure8, compare_table2, fmt,
                             headless_browser, network_references, paper_numbers, screenshots)
from balstyle.runner import STUDIES, reproduce, studies_dir

REMOTE_SCRIPT_OR_STYLE = re.compile(r"""<script\b[^>]*\bsrc\s*=\s*["']?\s*(?:https?:)?//|<link\b[^>]*\bhref\s*=\s*["']?\s*(?:https?:)?//""", re.I)


@pytest.fixture(scope="module")
def smoke_site(tmp_path_factory):
    "Study III run at smoke scale into a temporary folder (what `balstyle reproduce --scale smoke --only study3` does), and the report built from it."
    tmp = tmp_path_factory.mktemp("report")
    with pytest.MonkeyPatch.context() as env:
        env.delenv("MPLBACKEND", raising=False)          # conftest's Agg would reach the kernel and keep the figures out of the executed copy
        outcomes = reproduce("smoke", only=["study3"], figures=tmp / "figs", runs=tmp / "runs")
    assert all(o.ok for o in outcomes), [str(o) for o in outcomes]
    site = build_report(runs=tmp / "runs", figures=tmp / "figs", out=tmp / "site")
    return tmp, site


def test_no_page_loads_anything_from_the_network_and_every_local_link_resolves(smoke_site):
    _, site = smoke_site
    pages = sorted(site.rglob("*.html"))
    assert {p.relative_to(site).as_posix() for p in pages} == {"index.html", "smoke/study3_loss_vs_supremum.html"}
    assert check_site(site) == []
    for page in pages:
        text = page.read_text(encoding="utf-8")
        assert not REMOTE_SCRIPT_OR_STYLE.search(text), f"{page} references a remote script or stylesheet"
        assert network_references(text) == [], page
        assert "cdnjs" not in text and "unpkg" not in text and "require.min.js" not in text, page
    study = (site / "smoke" / "study3_loss_vs_supremum.html").read_text(encoding="utf-8")
    assert study.count('src="data:image/png;base64,') >= 1                 # the figures are inside the page
    assert "not the papers" in study and 'href="../index.html"' in study


def test_the_index_lists_every_study_and_every_artefact_and_places_our_numbers(smoke_site):
    tmp, site = smoke_site
    index = (site / "index.html").read_text(encoding="utf-8")
    for name in STUDIES: assert f'id="study-{name}"' in index, f"{name} is missing from the index"
    for a in ARTEFACTS: assert f'id="{a.anchor}"' in index, a.name
    transcribed = paper_numbers()[["paper", "artefact"]].drop_duplicates()
    assert set(map(tuple, transcribed.to_numpy())) <= {(a.paper, a.name) for a in ARTEFACTS}
    fits = pd.read_csv(tmp / "figs" / "paperA" / "study3_loss_vs_supremum_fits_smoke.csv", index_col="layer")
    figure4 = index[index.index('id="A-figure-4"'):index.index('id="A-table-3"')]
    for layer, r in fits["pearson_r"].items():
        assert re.search(rf"{layer}: Pearson r.*?<td class=\"n\" data-label=\"ours · smoke[^\"]*\">{re.escape(fmt(r))}", figure4), layer
    assert 'href="smoke/study3_loss_vs_supremum.html"' in figure4
    assert "ours · cpu" not in index and "cpu: never run" in index           # a scale that never ran: listed as such, no empty column
    assert html.unescape(index).count("not the papers' results") >= 3 and index.count("<style>") == 1
    for name in (n for n in STUDIES if n != "study3"):                       # nothing else ran here
        row = re.search(rf'<tr id="study-{name}">(.*?)</tr>', index, re.S).group(1)
        assert row.count("never run") == 3, name


def test_a_broken_site_is_reported_and_a_foreign_folder_is_never_replaced(tmp_path):
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "index.html").write_text('<link rel="stylesheet" href="https://cdn.example.org/a.css">'
                                                  '<img src="figs/missing.png"><a href="smoke/none.html">x</a><a href="#gone">y</a>')
    problems = check_site(tmp_path / "site")
    assert len(problems) == 4 and any("cdn.example.org" in p for p in problems) and any("missing.png" in p for p in problems)
    (tmp_path / "mine").mkdir(); (tmp_path / "mine" / "keep.txt").write_text("not a report")
    with pytest.raises(ValueError, match="refusing to replace"):
        build_report(runs=tmp_path / "runs", figures=tmp_path / "figs", out=tmp_path / "mine")
    assert (tmp_path / "mine" / "keep.txt").exists()


def _paper_assignment(notebook: str, **names):
    "Evaluate the `PAPER = ...` statement of a study notebook (its own copy of the paper's numbers), with `names` defined."
    nb = nbformat.read(studies_dir() / notebook, as_version=4)
    for cell in nb.cells:
        if cell.cell_type != "code" or "PAPER" not in cell.source: continue
        for node in ast.parse(cell.source).body:
            if isinstance(node, ast.Assign) and [getattr(t, "id", None) for t in node.targets] == ["PAPER"]:
                return eval(compile(ast.Expression(node.value), notebook, "eval"), {"pd": pd, **names})
    raise AssertionError(f"{notebook} has no PAPER assignment")


def test_the_study_notebooks_quote_the_same_numbers_as_data_paper_numbers():
    "The studies keep their own copies of the paper's numbers; they must agree with the one transcription."
    numbers = paper_numbers()
    grid = lambda artefact: numbers[(numbers.paper == "A") & (numbers.artefact == artefact)].pivot(index="row", columns="column", values="number")
    t5 = _paper_assignment("table5_losses.ipynb")
    assert t5["paper_classic"].to_dict() == grid("Table 5")["Classic Loss"].to_dict()
    assert t5["paper_balanced"].to_dict() == grid("Table 5")["New Balanced Loss"].to_dict()
    t6 = _paper_assignment("table6_deception.ipynb")
    for column, printed in (("paper_classic", "Classic Loss"), ("paper_balanced", "Bal. Loss"), ("paper_imp", "Imp."), ("paper_rimp", "RImp.")):
        assert t6[column].to_dict() == grid("Table 6").loc[t6.index, printed].to_dict(), column
    if (studies_dir() / "fig8_human_preference.ipynb").exists():
        f8 = _paper_assignment("fig8_human_preference.ipynb")
        for column, printed in (("balanced", "Bal. Loss Preferred"), ("classic", "Classic Loss Preferred"), ("same", "Same Quality")):
            assert f8[column].to_dict() == grid("Figure 8").loc[f8.index, printed].to_dict(), column
    if (studies_dir() / "study2_5_human_ratings.ipynb").exists():
        layers = ["l1", "l2", "l3", "l4"]
        ratings = _paper_assignment("study2_5_human_ratings.ipynb", LAYERS=layers)
        for loss, table in (("classic", "Table 2"), ("balanced", "Table 3")):
            assert list(ratings[loss].values()) == grid(table).loc["Average", list(dict.fromkeys(numbers[(numbers.paper == "A") & (numbers.artefact == table)]["column"]))].tolist()


def test_table2_verdicts_follow_the_pooled_interval(tmp_path):
    "Table 2's direction: the paper's negative averages against our pooled 95% interval (resolved below 0, above 0, or neither)."
    columns = pd.MultiIndex.from_product([["relu1_2", "relu2_2", "relu3_3", "relu4_3", "total"], ["rho", "low", "high"]])
    values = {"average": [-0.2, None, None] * 5,
              "all votes": [-0.2, -0.3, -0.1, 0.2, 0.1, 0.3, 0.0, -0.1, 0.1, -0.05, -0.2, 0.02, -0.2, -0.3, -0.1]}
    table = pd.DataFrame.from_dict(values, orient="index", columns=columns).rename_axis("annotator")
    table.to_csv(tmp_path / "t2.csv")
    tables = {"paperA/study2_table2_classic_correlation": OurTable("paperA/study2_table2_classic_correlation", tmp_path / "t2.csv", {}, None)}
    numbers = paper_numbers()
    rows = compare_table2(numbers[(numbers.paper == "A") & (numbers.artefact == "Table 2")], tables)
    assert [r.verdict for r in rows] == ["agrees", "disagrees", "not resolved", "not resolved", "agrees"]
    assert rows[0].ours.startswith("−0.2; all votes −0.2 [−0.3, −0.1]")


def test_figure8_counts_a_preference_only_when_the_intervals_are_apart():
    "Figure 8's direction: the balanced model preferred only when its share's 95% interval lies above the classic model's."
    shares = {"GoogleMagenta": (60, 50, 70, 20, 10, 30), "AdaIN": (30, 20, 40, 35, 25, 45), "LinearTransfer": (10, 5, 15, 50, 40, 60),
              "SANet": (40, 30, 50, 40, 30, 50), "Overall": (35, 30, 40, 36, 31, 41)}
    rows = [dict(method=m, preferred=p, share=v[k], low=v[k + 1], high=v[k + 2], votes=100)
            for m, v in shares.items() for p, k in (("balanced", 0), ("classic", 3))]
    frame = pd.DataFrame(rows)
    numbers = paper_numbers()
    found = compare_figure8(numbers[(numbers.paper == "A") & (numbers.artefact == "Figure 8")], {"paperA/fig8_human_preference": OurTable("f8", None, {}, frame)})
    verdicts = {r.quantity.split(":")[0]: r.verdict for r in found if "preferred over classic" in r.quantity}
    assert verdicts == {"GoogleMagenta": "agrees", "AdaIN": "not resolved", "LinearTransfer": "disagrees", "SANet": "not resolved", "Overall": "not resolved"}
    assert [r.ours for r in found if "preferred over classic" in r.quantity][3].startswith("neither")
    assert found[0].ours == "100" and found[-1].ours == "−3%"


@pytest.mark.skipif(browser_missing() is not None, reason=f"no headless browser: {browser_missing()}")
def test_the_index_renders_in_a_headless_browser_and_fetches_nothing_remote(smoke_site, tmp_path):
    tmp, site = smoke_site
    from selenium.webdriver.common.by import By
    fits = pd.read_csv(tmp / "figs" / "paperA" / "study3_loss_vs_supremum_fits_smoke.csv", index_col="layer")
    with headless_browser() as driver:
        driver.get((site / "index.html").as_uri())
        table = driver.find_element(By.ID, "A-figure-4-table")
        headers = [th.text for th in table.find_elements(By.CSS_SELECTOR, "thead th")]
        assert headers[:2] == ["quantity", "paper"] and headers[2].startswith("ours · smoke") and "not the papers' results" in headers[2]
        cells = {row.find_elements(By.TAG_NAME, "td")[0].text: row.find_elements(By.TAG_NAME, "td")[2].text
                 for row in table.find_elements(By.CSS_SELECTOR, "tbody tr")}
        r = fits.loc["relu1_2", "pearson_r"]
        assert cells["relu1_2: Pearson r, classic loss against its supremum"].startswith(fmt(r))
        assert ("agrees" if r > 0 else "disagrees") in cells["relu1_2: Pearson r, classic loss against its supremum"]
        assert len(driver.find_elements(By.CSS_SELECTOR, "table.cmp")) >= 5
        remote = driver.execute_script("return performance.getEntriesByType('resource').map(e => e.name).filter(n => !n.startsWith('file:') && !n.startsWith('data:'))")
        assert remote == []
        driver.find_element(By.CSS_SELECTOR, 'a[href="smoke/study3_loss_vs_supremum.html"]').click()
        widths = driver.execute_script("return Array.from(document.images).map(i => i.complete ? i.naturalWidth : -1)")
        assert widths and all(w > 0 for w in widths)                     # every embedded figure decodes
        remote = driver.execute_script("return performance.getEntriesByType('resource').map(e => e.name).filter(n => !n.startsWith('file:') && !n.startsWith('data:'))")
        assert remote == []
    shots = screenshots(site, tmp_path / "shots", max_height=1500)
    for path in shots:
        width, height = struct.unpack(">II", path.read_bytes()[16:24])       # the PNG header's size
        assert width == WIDTHS["desktop" if "desktop" in path.name else "phone"] and 0 < height <= 1500, path
