"""The annotation app (issue 20): its HTTP API under concurrent votes and a killed server, and one session in a real headless browser."""
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
from PIL import Image
from torch import nn

from balstyle.annotate import AnnotationStudy, export_votes, prepare_study
from balstyle.report import browser_missing, headless_browser

BIN = Path(sys.executable).parent


class Toy(nn.Module):
    "A 'model' that returns the content (as a classic model) or the style (as a balanced one)."
    def __init__(self, take): super().__init__(); self.take = take
    def stylize(self, content, style): return content if self.take == "content" else style


def toy_study(folder: Path, kind: str, n_items: int = 8) -> AnnotationStudy:
    rng, rows = np.random.default_rng(0), []
    for k in range(20):
        for role in ("content", "style"):
            Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(folder / f"{role}{k}.png")
        rows.append(dict(content=str(folder / f"content{k}.png"), style=str(folder / f"style{k}.png"), kind="painting", label=f"painter {k}"))
    models = {"OurT": dict(method="Toy", loss="classic", model=Toy("content")), "OurBalT": dict(method="Toy", loss="balanced", model=Toy("style"))}
    return prepare_study(folder / kind, kind, pd.DataFrame(rows).rename_axis("pair"), models, n_items, image_size=32)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0)); return s.getsockname()[1]


def serve(folder: Path, port: int) -> subprocess.Popen:
    process = subprocess.Popen([str(BIN / "balstyle"), "annotate", "serve", str(folder), "--port", str(port)],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/", timeout=2).status_code == 200: return process
        except httpx.TransportError: time.sleep(0.3)
        if process.poll() is not None: raise AssertionError(process.communicate()[0])
    raise AssertionError("the server did not start")


def rows(folder: Path) -> list:
    with sqlite3.connect(folder / "votes.sqlite") as db: return db.execute("SELECT annotator, item, answer FROM votes ORDER BY item").fetchall()


def test_concurrent_votes_and_a_killed_server_lose_nothing(tmp_path):
    study = toy_study(tmp_path, "rating", n_items=30)
    port = free_port()
    server = serve(study.folder, port)
    url = f"http://127.0.0.1:{port}"
    tokens = [httpx.post(f"{url}/api/join", json={"name": f"rater {k}"}).json()["token"] for k in range(4)]
    accepted = {t: [] for t in tokens}

    def annotate(token, n):
        with httpx.Client(base_url=url, timeout=30) as client:
            for _ in range(n):
                item = client.get("/api/next", params={"token": token}).json()["item"]
                reply = client.post("/api/vote", json={"token": token, "item": item, "answer": "bad"})
                assert reply.status_code == 200, reply.text
                accepted[token].append(item)

    workers = [threading.Thread(target=annotate, args=(t, 10)) for t in tokens]
    for w in workers: w.start()
    for w in workers: w.join()
    os.killpg(server.pid, signal.SIGKILL); server.wait()                 # killed without warning, right after the last answer
    assert len(rows(study.folder)) == 40                                 # every accepted vote is on disk
    server = serve(study.folder, port)
    try:
        nxt = httpx.get(f"{url}/api/next", params={"token": tokens[0]}).json()
        assert nxt["progress"] == {"done": 10, "total": 30} and nxt["item"] not in accepted[tokens[0]]     # resumes where it stopped
        second = httpx.post(f"{url}/api/vote", json={"token": tokens[0], "item": accepted[tokens[0]][0], "answer": "good"})
        assert second.json() == {"done": 10, "total": 30}                # a second vote replaces the first
        bad = httpx.post(f"{url}/api/vote", json={"token": tokens[0], "item": "nope", "answer": "good"})
        assert bad.status_code == 404 and "no item 'nope'" in bad.json()["error"]
        assert len(rows(study.folder)) == 40
    finally:
        os.killpg(server.pid, signal.SIGKILL); server.wait()
    table = export_votes(AnnotationStudy(study.folder))
    changed = table[table["replaced"] > 0]
    assert len(changed) == 1 and changed.iloc[0]["answer"] == "good" and changed.iloc[0]["score"] == -1


@pytest.mark.parametrize("kind", ["rating", "preference"])
def test_a_session_in_a_real_browser(tmp_path, kind):
    if browser_missing(): pytest.skip(f"no headless browser here ({browser_missing()})")
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as ready
    from selenium.webdriver.support.ui import WebDriverWait
    study = toy_study(tmp_path, kind, n_items=5)
    port = free_port()
    server = serve(study.folder, port)
    try:
        with headless_browser() as browser:
            wait = WebDriverWait(browser, 30)
            progress = lambda text: wait.until(ready.text_to_be_present_in_element((By.ID, "progress"), text))
            browser.set_window_size(390, 844)                                          # a phone
            browser.get(f"http://127.0.0.1:{port}/")
            wait.until(ready.visibility_of_element_located((By.ID, "name"))).send_keys("Ana", Keys.ENTER)
            progress("Ana: 0 of 5 done")
            first = browser.find_element(By.ID, "img1").get_attribute("src")
            browser.find_elements(By.CSS_SELECTOR, "#answers button")[0].click()       # a vote by click
            progress("1 of 5")
            browser.find_element(By.TAG_NAME, "body").send_keys("3")                   # a vote by key
            progress("2 of 5")
            browser.find_element(By.TAG_NAME, "body").send_keys(Keys.ARROW_DOWN if kind == "preference" else "2")
            progress("3 of 5")
            browser.refresh()                                                          # the token survives a reload: resumed, not restarted
            progress("Ana: 3 of 5 done")
            assert "token=" in browser.current_url and browser.find_element(By.ID, "img1").get_attribute("src") != first
            answers = sorted(answer for _, _, answer in rows(study.folder))
            assert answers == sorted(["good", "bad", "ok"] if kind == "rating" else ["left", "right", "same"])
            table = export_votes(AnnotationStudy(study.folder))
            assert set(table["annotator"]) == {"Ana"} and len(table) == 3
            if kind == "preference": assert set(table["preferred"]) <= {"classic", "balanced", "same"} and "same" in set(table["preferred"])
    finally:
        os.killpg(server.pid, signal.SIGKILL); server.wait()
