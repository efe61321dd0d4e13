"""TF Serving's number text for float/double tensor values, vectorized.

Per value: printf ``%g``; if that does not parse back to the same value (in float32 for DT_FLOAT),
``%.9g`` / ``%.17g``; then ``.0`` is appended when the text has neither ``.`` nor ``e``. Non-finite
values print as the bare tokens ``NaN``, ``Infinity``, ``-Infinity``.
"""

from __future__ import annotations

import numpy as np


def _percent_format(fmt: str, values: list[float]) -> list[str]:
    # One %-call over a long format string runs the whole loop in C.
    if not values:
        return []
    return ((fmt + "\x00") * len(values) % tuple(values)).split("\x00")[:-1]


def _object_array(items: list[str]) -> np.ndarray:
    out = np.empty(len(items), dtype=object)
    out[:] = items
    return out


_SMALL = 32
_NON_FINITE = {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}


def _format_few(flat: np.ndarray, single: bool) -> list[str]:
    # Below a few dozen values numpy's fixed per-call costs outweigh a plain loop (batch-1 answers).
    texts = []
    long_fmt = "%.9g" if single else "%.17g"
    cast = np.float32 if single else float
    for value in flat.tolist():
        text = "%g" % value
        if text in _NON_FINITE:
            texts.append(_NON_FINITE[text])
            continue
        if cast(float(text)) != cast(value):
            text = long_fmt % value
        if "." not in text and "e" not in text and "n" not in text:
            text += ".0"
        texts.append(text)
    return texts


def format_floats(values: np.ndarray, single: bool) -> list[str]:
    """Texts of ``values`` (any shape, flattened in C order) as TF Serving prints DT_FLOAT
    (``single=True``) or DT_DOUBLE values."""
    flat = np.ascontiguousarray(values, dtype=np.float32 if single else np.float64).reshape(-1)
    n = flat.size
    if n == 0:
        return []
    if n <= _SMALL:
        return _format_few(flat, single)
    wide = flat.astype(np.float64)
    finite = np.isfinite(wide)
    all_finite = bool(finite.all())
    if not all_finite:
        wide = np.where(finite, wide, 0.0)

    # Predict which values survive %g: round to 6 significant digits numerically. The estimate is
    # within a few ulps (double) of the decimal %g prints, so for float32 it usually settles the
    # question; values it cannot settle are confirmed by parsing their real %g text.
    with np.errstate(all="ignore"):
        magnitude = np.abs(wide)
        exponent = np.floor(np.log10(np.where(magnitude > 0, magnitude, 1.0)))
        scale = np.power(10.0, 5.0 - exponent)
        rounded = np.round(wide * scale) / scale
        unsure = ~np.isfinite(rounded)
        if single:
            r32 = rounded.astype(np.float32)
            certain = (
                (r32 == flat)
                & ((rounded * (1 + 1e-15)).astype(np.float32) == flat)
                & ((rounded * (1 - 1e-15)).astype(np.float32) == flat)
            )
            unsure |= ~certain & (np.abs(r32 - flat) <= np.spacing(np.abs(flat)))
        else:
            certain = magnitude == 0
            unsure |= ~certain & (np.abs(rounded - wide) <= 4 * np.spacing(magnitude))
    certain &= finite
    unsure &= finite

    out = np.empty(n, dtype=object)
    long_fmt = "%.9g" if single else "%.17g"
    short_idx = np.flatnonzero(certain)
    if short_idx.size:
        out[short_idx] = _object_array(_percent_format("%g", wide[short_idx].tolist()))
    if unsure.any():
        idx = np.flatnonzero(unsure)
        texts = _object_array(_percent_format("%g", wide[idx].tolist()))
        parsed = np.array(texts, dtype=np.float64)
        ok = (parsed.astype(np.float32) == flat[idx]) if single else (parsed == wide[idx])
        out[idx[ok]] = texts[ok]
        certain[idx[ok]] = True
    short = certain
    long_idx = np.flatnonzero(~short & finite)
    if long_idx.size:
        out[long_idx] = _object_array(_percent_format(long_fmt, wide[long_idx].tolist()))

    # Texts without '.' or 'e' are exactly the integral values printed positionally: below 1e6 for
    # %g, below 1e9 / 1e17 for the long forms (larger ones switch to exponent notation).
    integral = finite & (np.trunc(wide) == wide)
    if integral.any():
        limit = np.where(short, 1e6, 1e9 if single else 1e17)
        needs_dot = np.flatnonzero(integral & (np.abs(wide) < limit))
        if needs_dot.size:
            out[needs_dot] = out[needs_dot] + ".0"
    if not all_finite:
        bad = ~finite
        src = flat.astype(np.float64)
        out[bad & np.isnan(src)] = "NaN"
        out[bad & (src > 0)] = "Infinity"
        out[bad & (src < 0)] = "-Infinity"
    return out.tolist()


def format_float(value: float, single: bool) -> str:
    """One value's text (``format_floats`` for a single number)."""
    return format_floats(np.asarray([value]), single)[0]
