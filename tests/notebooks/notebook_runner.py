"""Run the demo notebooks top to bottom in a real kernel, as a user would, and report what they showed."""

from __future__ import annotations

import re
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

REPO = Path(__file__).resolve().parents[2]
NOTEBOOKS = REPO / "notebooks"
CELL_TIMEOUT_S = 600  # generous: a cell may train a model or run a latency bench on a busy machine

# What each notebook must show, beyond running without an error.
EXPECTED: dict[str, list[str]] = {
    "01_quickstart": [
        "10 image(s) in 1 request(s)",  # the example clients, batch (REST, then gRPC)...
        "10 image(s) in 10 request(s)",  # ...and one by one
        "exported version 2",
        "now served by version 2",
        "grpc sequential",
    ],
    "02_versions_and_ab": [
        "answered by versions {'1':",  # the hot swap: traffic saw version 1...
        "'2':",  # ...then version 2
        "labels: {'stable': 2, 'canary': 1}",
        "after rollback: {'production': 1, 'experimental': 2}",
        "top-1 agreement",
    ],
    "03_batching_and_latency": ["[batching on]", "[batching off]", "batch_timeout_micros= 20000"],
    "04_to_production": ["5 image(s) in 1 request(s)", "serving:request_count", "model_config_list"],
}


def notebook_paths() -> list[Path]:
    """Every notebook under notebooks/, in order."""
    return sorted(NOTEBOOKS.glob("*.ipynb"))


def execute(path: Path, out_dir: Path) -> tuple[nbformat.NotebookNode, float]:
    """Execute ``path`` from the notebooks/ directory (errors fail the run); save the executed copy in
    ``out_dir``; return it and the seconds it took."""
    book = nbformat.read(path, as_version=4)
    client = NotebookClient(
        book, timeout=CELL_TIMEOUT_S, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}}
    )
    start = time.monotonic()
    try:
        client.execute()
    finally:
        nbformat.write(book, out_dir / path.name)
    return book, time.monotonic() - start


def outputs_text(book: nbformat.NotebookNode) -> str:
    """Every stream and text/plain output, joined: what a reader sees as text."""
    parts = []
    for cell in book.cells:
        for output in cell.get("outputs", []):
            if output.output_type == "stream":
                parts.append(output.text)
            elif "data" in output:
                parts.append(output.data.get("text/plain", ""))
    return "\n".join(parts)


def mime_types(book: nbformat.NotebookNode) -> set[str]:
    """The MIME types of every rich output."""
    outputs = [output for cell in book.cells for output in cell.get("outputs", [])]
    return {mime for output in outputs for mime in output.get("data", {})}


def check_outputs(book: nbformat.NotebookNode, name: str) -> None:
    """Assert the executed notebook ``name`` showed what it promises, no error and no failed request,
    a plot, and stopped its server."""
    text = outputs_text(book)
    for expected in EXPECTED[name]:
        assert expected in text, f"{name} did not show {expected!r}"
    # shell escapes (!python ...) do not fail a cell: their errors must not show either
    assert "Traceback" not in text and "error:" not in text.lower()
    assert all(int(n) == 0 for n in re.findall(r"(\d+) failed", text)), "a request failed"
    assert "image/png" in mime_types(book) or name == "04_to_production"
    assert text.rstrip().endswith("are free."), "the notebook must stop its server"


if __name__ == "__main__":  # python notebook_runner.py NOTEBOOK OUT_DIR: what the binder env test runs
    import sys

    _, seconds = execute(Path(sys.argv[1]).resolve(), Path(sys.argv[2]))
    print(f"executed {sys.argv[1]} in {seconds:.1f}s")
