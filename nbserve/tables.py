"""Small text and HTML tables for rich reprs (export results, model summaries)."""

from __future__ import annotations

import html
from collections.abc import Sequence

Cell = str | Sequence[str]  # a sequence is one value per line


def _lines(cell: Cell) -> list[str]:
    return [cell] if isinstance(cell, str) else list(cell) or [""]


def text_table(header: Sequence[str], rows: Sequence[Sequence[Cell]]) -> str:
    """Columns padded to their widest line; a multi-line cell takes several lines."""
    table = [[_lines(c) for c in row] for row in [list(header), *rows]]
    widths = [max(len(line) for row in table for line in row[i]) for i in range(len(header))]
    out = []
    for row in table:
        for k in range(max(len(cell) for cell in row)):
            parts = [(cell[k] if k < len(cell) else "").ljust(w) for cell, w in zip(row, widths, strict=True)]
            out.append("  ".join(parts).rstrip())
    return "\n".join(out)


def html_table(header: Sequence[str], rows: Sequence[Sequence[Cell]], caption: str = "") -> str:
    """An HTML table; every value is escaped."""

    def cell(tag: str, value: Cell) -> str:
        body = "<br>".join(html.escape(line) for line in _lines(value))
        return f'<{tag} style="text-align:left">{body}</{tag}>'

    head = "".join(cell("th", h) for h in header)
    body = "".join("<tr>" + "".join(cell("td", c) for c in row) + "</tr>" for row in rows)
    title = f"<caption>{html.escape(caption)}</caption>" if caption else ""
    return f"<table>{title}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
