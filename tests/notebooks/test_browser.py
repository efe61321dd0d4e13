"""JupyterLab on 127.0.0.1, driven by Playwright in Debian's headless Chromium: open 01_quickstart, run all
cells, and find the rendered export widget and a latency plot in the page. Screenshots go to
tests/notebooks/output/ (gitignored). ``make browser`` installs /usr/bin/chromium."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from notebook_runner import CELL_TIMEOUT_S, NOTEBOOKS, REPO

from nbserve.ports import free_port

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
]  # fmt: skip
OUTPUT = Path(__file__).parent / "output"
NOTEBOOK = "01_quickstart.ipynb"
# JupyterLab user settings: render every cell (no windowing, so off-screen outputs are in the DOM) and never
# autosave (the copy run here must not matter, but nothing should be written behind our back).
SETTINGS = {
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    "@jupyterlab/docmanager-extension/plugin.jupyterlab-settings": {"autosave": False},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false"},
}


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[str]:
    """JupyterLab serving a copy of notebooks/ and examples/; yields the notebook's URL (with the token)."""
    root = tmp_path / "root"
    shutil.copytree(NOTEBOOKS, root / "notebooks")
    shutil.copytree(REPO / "examples", root / "examples", ignore=shutil.ignore_patterns("__pycache__"))
    settings = tmp_path / "settings"
    for name, values in SETTINGS.items():
        (settings / name).parent.mkdir(parents=True, exist_ok=True)
        (settings / name).write_text(json.dumps(values))
    env = os.environ | {
        "JUPYTERLAB_SETTINGS_DIR": str(settings),
        "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "workspaces"),
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
    }
    port, token = free_port(), secrets.token_hex(16)
    log = (tmp_path / "jupyterlab.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
         f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}", "--ServerApp.port_retries=0",
         "--allow-root"],
        env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=5).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"JupyterLab did not start; see {log.name}") from None
                time.sleep(0.5)
        yield f"{base}/lab/tree/notebooks/{NOTEBOOK}?token={token}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="run `make browser` (apt-get install chromium)")
def test_quickstart_in_jupyterlab(lab: str) -> None:
    from playwright.sync_api import sync_playwright

    OUTPUT.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(lab)
            page.wait_for_selector(".jp-NotebookPanel .jp-Cell", timeout=120_000)
            # the kernel is ready when the toolbar's status says Idle
            page.wait_for_selector(".jp-NotebookPanel [data-status='idle']", timeout=120_000)
            page.click(".jp-NotebookPanel .jp-Cell")
            page.keyboard.press("Escape")
            page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
            page.locator(".lm-Menu-item[data-command='runmenu:run-all']").click()
            # the last cell stops the server: its output says the ports are free
            page.wait_for_function(
                "() => [...document.querySelectorAll('.jp-OutputArea-output')]"
                ".some(e => e.textContent.includes('are free.'))",
                timeout=CELL_TIMEOUT_S * 1000,
            )
            page.screenshot(path=str(OUTPUT / "quickstart_done.png"))

            errors = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")
            tracebacks = [t for t in errors.all_text_contents() if "Traceback" in t]
            assert not tracebacks, tracebacks[0]

            widget = page.locator(".jupyter-widgets button:has-text('Export')").first
            widget.wait_for(state="visible", timeout=60_000)
            dropdown = page.locator(".jupyter-widgets select").first
            assert "model" in dropdown.locator("option").all_text_contents()
            # the export the notebook drove through the widget, reported in the widget itself
            assert page.locator(".jupyter-widgets", has_text="Serving digits version 2: AVAILABLE").count()
            widget.scroll_into_view_if_needed()
            page.screenshot(path=str(OUTPUT / "quickstart_export_widget.png"))

            plot = page.locator(".jp-RenderedImage img").first
            plot.wait_for(state="visible", timeout=60_000)
            assert plot.evaluate("img => img.complete && img.naturalWidth") > 100
            plot.scroll_into_view_if_needed()
            page.screenshot(path=str(OUTPUT / "quickstart_latency_plot.png"))
        finally:
            browser.close()
