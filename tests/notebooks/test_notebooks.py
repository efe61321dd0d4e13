"""Every notebook under notebooks/ runs top to bottom in a real kernel and shows what it promises."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from notebook_runner import EXPECTED, check_outputs, execute, notebook_paths


def test_every_notebook_is_covered() -> None:
    assert sorted(p.stem for p in notebook_paths()) == sorted(EXPECTED)


@pytest.mark.parametrize("path", notebook_paths(), ids=lambda p: p.stem)
def test_committed_without_outputs(path: Path) -> None:
    book = nbformat.read(path, as_version=4)
    nbformat.validate(book)
    for cell in book.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, cell.source[:60]


@pytest.mark.parametrize("path", notebook_paths(), ids=lambda p: p.stem)
def test_notebook_runs(path: Path, tmp_path: Path) -> None:
    book, seconds = execute(path, tmp_path)
    check_outputs(book, path.stem)
    assert seconds < 300, f"{path.name} took {seconds:.0f}s"
