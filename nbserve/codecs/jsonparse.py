"""TF Serving's lenient JSON reader (rapidjson semantics) and its debug printer.

TF Serving parses bodies with rapidjson (iterative, ``NaN``/``Inf``/``Infinity`` tokens, stops after the
first value). We parse with orjson when the body is plain JSON, with the stdlib decoder when it only
adds ``NaN``/``Infinity``/trailing bytes, and otherwise with :class:`_RapidParser`, an iterative
port of rapidjson's state machine that also yields rapidjson's error texts and byte offsets.
Parsed documents are plain Python values (dict, list, str, int, float, bool, None); JSON strings
are ``str`` decoded with ``surrogateescape``, so invalid UTF-8 survives as raw bytes.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

import orjson

from nbserve.errors import InvalidArgument

_INT64_MIN = -(1 << 63)
_UINT64_MAX = (1 << 64) - 1

# ---------------------------------------------------------------------------------------------
# Printing values the way TF Serving's error messages do (JsonValueToDebugString).
# ---------------------------------------------------------------------------------------------

_DEBUG_LIMIT = 256
_ESCAPES = {c: f"\\u{c:04X}" for c in range(0x20)}
_ESCAPES.update({0x08: "\\b", 0x09: "\\t", 0x0A: "\\n", 0x0C: "\\f", 0x0D: "\\r"})
_ESCAPES.update({ord('"'): '\\"', ord("\\"): "\\\\"})
_ESCAPE_TABLE = str.maketrans(_ESCAPES)
_END = object()


def json_string(text: str) -> str:
    """A JSON string literal escaped exactly as rapidjson's writer does (non-ASCII left raw)."""
    return '"' + text.translate(_ESCAPE_TABLE) + '"'


def rapidjson_double(value: float) -> str:
    """rapidjson's ``Writer::Double`` text: shortest digits, ``1.0``, ``1e21``, ``1.5e-7``."""
    if value == 0:
        return "-0.0" if math.copysign(1.0, value) < 0 else "0.0"
    text = repr(abs(value))
    mantissa, _, exp_text = text.partition("e")
    int_part, _, frac_part = mantissa.partition(".")
    digits = (int_part + frac_part).lstrip("0")
    k = (int(exp_text) if exp_text else 0) - len(frac_part)
    stripped = digits.rstrip("0")
    k += len(digits) - len(stripped)
    digits = stripped
    length = len(digits)
    kk = length + k
    if 0 <= k and kk <= 21:
        out = digits + "0" * k + ".0"
    elif 0 < kk <= 21:
        out = digits[:kk] + "." + digits[kk:]
    elif -6 < kk <= 0:
        out = "0." + "0" * -kk + digits
    elif length == 1:
        out = f"{digits}e{kk - 1}"
    else:
        out = f"{digits[0]}.{digits[1:]}e{kk - 1}"
    return "-" + out if value < 0 else out


def _utf8_len(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


def json_debug_string(value: Any, limit: int = _DEBUG_LIMIT) -> str:
    """Render a parsed JSON value like TF Serving's ``JsonValueToDebugString``.

    rapidjson's PrettyWriter (4-space indent, arrays on one line), cut off once ``limit`` bytes are
    written, and stopping at a non-finite number (rapidjson refuses to print those). Iterative, so
    arbitrarily deep documents are fine.
    """
    parts: list[str] = []
    size = 0
    levels: list[list[Any]] = []  # [in_array, value_count] per open container
    stack: list[tuple[int, Any]] = [(0, iter((value,)))]  # (kind 0=root 1=array 2=object, iterator)

    def put(text: str) -> None:
        nonlocal size
        parts.append(text)
        size += _utf8_len(text)

    def prefix() -> None:
        if not levels:
            return
        level = levels[-1]
        if level[0]:
            if level[1] > 0:
                put(", ")
        else:
            if level[1] > 0:
                put(",\n" if level[1] % 2 == 0 else ": ")
            else:
                put("\n")
            if level[1] % 2 == 0:
                put("    " * len(levels))
        level[1] += 1

    while stack:
        if size >= limit:
            break
        kind, iterator = stack[-1]
        item = next(iterator, _END)
        if item is _END:
            stack.pop()
            if kind == 0:
                break
            level = levels.pop()
            if kind == 2 and level[1]:
                put("\n" + "    " * len(levels))
            put("]" if kind == 1 else "}")
            continue
        if kind == 2:
            key, item = item
            prefix()
            put(json_string(key))
            if size >= limit:
                break
        prefix()
        if isinstance(item, dict):
            put("{")
            levels.append([False, 0])
            stack.append((2, iter(item.items())))
        elif isinstance(item, list):
            put("[")
            levels.append([True, 0])
            stack.append((1, iter(item)))
        elif isinstance(item, str):
            put(json_string(item))
        elif item is None:
            put("null")
        elif item is True:
            put("true")
        elif item is False:
            put("false")
        elif isinstance(item, int):
            put(str(item))
        elif isinstance(item, float):
            if not math.isfinite(item):
                break
            put(rapidjson_double(item))
        else:
            put(json_string(str(item)))
    return "".join(parts)


def json_type_name(value: Any) -> str:
    """rapidjson's type names used in TF Serving messages (Null, False, True, Object, ...)."""
    if value is None:
        return "Null"
    if value is True:
        return "True"
    if value is False:
        return "False"
    if isinstance(value, dict):
        return "Object"
    if isinstance(value, list):
        return "Array"
    if isinstance(value, str):
        return "String"
    return "Number"


# ---------------------------------------------------------------------------------------------
# Parsing.
# ---------------------------------------------------------------------------------------------

_ERR_EMPTY = "The document is empty."
_ERR_VALUE = "Invalid value."
_ERR_MISS_NAME = "Missing a name for object member."
_ERR_MISS_COLON = "Missing a colon after a name of object member."
_ERR_OBJECT_COMMA = "Missing a comma or '}' after an object member."
_ERR_ARRAY_COMMA = "Missing a comma or ']' after an array element."
_ERR_HEX = "Incorrect hex digit after \\u escape in string."
_ERR_SURROGATE = "The surrogate pair in string is invalid."
_ERR_ESCAPE = "Invalid escape character in string."
_ERR_QUOTE = "Missing a closing quotation mark in string."
_ERR_ENCODING = "Invalid encoding in string."
_ERR_TOO_BIG = "Number too big to be stored in double."
_ERR_FRACTION = "Miss fraction part in number."
_ERR_EXPONENT = "Miss exponent in number."


class _ParseError(Exception):
    def __init__(self, reason: str, offset: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.offset = offset


class _Fallback(Exception):
    """The stdlib decoder met something only the rapidjson port handles exactly."""


_WS_RE = re.compile(rb"[ \t\n\r]*")
_OPEN_RUN_RE = re.compile(rb"\[+")
_NUMBER_TOKEN = rb"-?(?:(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?|NaN|Infinity|Inf)"
_NUMBER_RUN_RE = re.compile(_NUMBER_TOKEN + rb"(?:[ \t\n\r]*,[ \t\n\r]*" + _NUMBER_TOKEN + rb")*")
_LONE_INF_RE = re.compile(rb"Inf(?!inity)")
_NUMBER_RE = re.compile(rb"-?(?:(?:0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?|(NaN|Infinity|Inf))")
_SIMPLE_STRING_RE = re.compile(rb'"([^"\\\x00-\x1f]*)"')
_SURROGATE_ESCAPE_RE = re.compile(rb"\\u[dD][89a-fA-F]")
_HEX = frozenset(b"0123456789abcdefABCDEF")
_SIMPLE_ESCAPES = {
    ord('"'): b'"',
    ord("\\"): b"\\",
    ord("/"): b"/",
    ord("b"): b"\b",
    ord("f"): b"\f",
    ord("n"): b"\n",
    ord("r"): b"\r",
    ord("t"): b"\t",
}
# Characters after a number that mean the fast regex may have stopped early (e.g. "1." or "Infin").
_NUMBER_TAIL = frozenset(b".eEi")
_VALUE_START = frozenset(b'[{"fnt')

# Parser states, named after rapidjson's IterativeParsingState.
_START, _OBJ_INIT, _MEMBER_KEY, _KV_DELIM, _MEMBER_VALUE, _MEMBER_DELIM = range(6)
_ARR_INIT, _ELEMENT, _ELEM_DELIM, _FINISH = range(6, 10)
# rapidjson's HandleError: the error reported for an unexpected token (or end) in each state.
_STATE_ERRORS = {
    _START: _ERR_EMPTY,
    _OBJ_INIT: _ERR_MISS_NAME,
    _MEMBER_DELIM: _ERR_MISS_NAME,
    _MEMBER_KEY: _ERR_MISS_COLON,
    _MEMBER_VALUE: _ERR_OBJECT_COMMA,
    _KV_DELIM: _ERR_VALUE,
    _ARR_INIT: _ERR_VALUE,
    _ELEM_DELIM: _ERR_VALUE,
    _ELEMENT: _ERR_ARRAY_COMMA,
}


def _int_or_double(text: bytes) -> int | float:
    if len(text) <= 21:
        value = int(text)
        if _INT64_MIN <= value <= _UINT64_MAX:
            return value
    return float(text)  # rapidjson stores integers beyond 64 bits as doubles


class _RapidParser:
    """Iterative port of rapidjson's reader with kParseIterativeFlag | kParseNanAndInfFlag |
    kParseStopWhenDoneFlag. Duplicate object keys: the first one wins (rapidjson's FindMember)."""

    def __init__(self, body: bytes) -> None:
        nul = body.find(b"\0")
        # rapidjson reads a NUL byte as the end of the stream.
        self.buf = body if nul < 0 else body[:nul]
        self.n = len(self.buf)

    def parse(self) -> Any:
        buf, n = self.buf, self.n
        pos = _WS_RE.match(buf, 0).end()
        state = _START
        containers: list[Any] = []  # open dicts/lists
        keys: list[str | None] = []  # pending key per open container
        while pos < n:
            c = buf[pos]
            if state in (_START, _KV_DELIM, _ARR_INIT, _ELEM_DELIM):
                if c == 0x5D and state == _ARR_INIT:  # ']'
                    pos += 1
                    value = containers.pop()
                    keys.pop()
                    state = self._after_value(containers)
                    if state == _FINISH:
                        return value
                elif c == 0x5B:  # '[' (a run of them at once: deep nesting stays cheap)
                    end = _OPEN_RUN_RE.match(buf, pos).end()
                    for _ in range(end - pos):
                        new: Any = []
                        if containers:
                            self._attach(containers, keys, new)
                        containers.append(new)
                        keys.append(None)
                    pos = end
                    state = _ARR_INIT
                elif c == 0x7B:  # '{'
                    pos += 1
                    new = {}
                    if containers:
                        self._attach(containers, keys, new)
                    containers.append(new)
                    keys.append(None)
                    state = _OBJ_INIT
                elif c in (0x5D, 0x7D, 0x3A, 0x2C):  # ] } : , cannot start a value
                    raise _ParseError(_STATE_ERRORS[state], pos)
                else:
                    if state in (_ARR_INIT, _ELEM_DELIM) and c not in _VALUE_START:
                        end = self._number_run(pos, containers[-1])
                        if end:
                            pos = _WS_RE.match(buf, end).end()
                            state = _ELEMENT
                            continue
                    value, pos = self._scalar(pos)
                    if not containers:
                        return value
                    self._attach(containers, keys, value)
                    state = _MEMBER_VALUE if isinstance(containers[-1], dict) else _ELEMENT
            elif state in (_OBJ_INIT, _MEMBER_DELIM):
                if c == 0x22:  # '"'
                    key, pos = self._string(pos)
                    keys[-1] = key
                    state = _MEMBER_KEY
                elif c == 0x7D and state == _OBJ_INIT:  # '}'
                    pos += 1
                    value = containers.pop()
                    keys.pop()
                    state = self._after_value(containers)
                    if state == _FINISH:
                        return value
                else:
                    raise _ParseError(_ERR_MISS_NAME, pos)
            elif state == _MEMBER_KEY:
                if c != 0x3A:  # ':'
                    raise _ParseError(_ERR_MISS_COLON, pos)
                pos += 1
                state = _KV_DELIM
            else:  # _MEMBER_VALUE or _ELEMENT
                in_object = state == _MEMBER_VALUE
                if c == 0x2C:  # ','
                    pos += 1
                    state = _MEMBER_DELIM if in_object else _ELEM_DELIM
                elif c == (0x7D if in_object else 0x5D):
                    pos += 1
                    value = containers.pop()
                    keys.pop()
                    # Close a run of ']' while each one ends an array.
                    while pos < n and buf[pos] == 0x5D and containers and type(containers[-1]) is list:
                        pos += 1
                        value = containers.pop()
                        keys.pop()
                    state = self._after_value(containers)
                    if state == _FINISH:
                        return value
                else:
                    raise _ParseError(_ERR_OBJECT_COMMA if in_object else _ERR_ARRAY_COMMA, pos)
            pos = _WS_RE.match(buf, pos).end()
        raise _ParseError(_STATE_ERRORS[state], pos)

    @staticmethod
    def _attach(containers: list[Any], keys: list[str | None], value: Any) -> None:
        top = containers[-1]
        if isinstance(top, dict):
            key = keys[-1]
            if key not in top:
                top[key] = value
        else:
            top.append(value)

    @staticmethod
    def _after_value(containers: list[Any]) -> int:
        if not containers:
            return _FINISH
        return _MEMBER_VALUE if isinstance(containers[-1], dict) else _ELEMENT

    def _number_run(self, pos: int, target: list) -> int:
        """Append a run of comma-separated numbers inside an array in one go (big numeric bodies
        with Inf/-NaN tokens end up here); return the end offset, or 0 to go value by value."""
        match = _NUMBER_RUN_RE.match(self.buf, pos)
        if match is None or match.end() - pos < 64:
            return 0
        end = match.end()
        if end < self.n and (self.buf[end] in _NUMBER_TAIL or 0x30 <= self.buf[end] <= 0x39):
            return 0  # the last number may continue (e.g. "1." or "Infin"): let _scalar judge it
        run = _LONE_INF_RE.sub(b"Infinity", match.group(0).replace(b"-NaN", b"NaN"))
        try:
            values = _STDLIB_DECODER.decode("[" + run.decode("ascii") + "]")
        except (ValueError, _Fallback):
            return 0
        target.extend(values)
        return end

    def _scalar(self, pos: int) -> tuple[Any, int]:
        buf, n = self.buf, self.n
        c = buf[pos]
        if c == 0x22:
            return self._string(pos)
        if c in (0x74, 0x66, 0x6E):  # t f n
            word, value = {0x74: (b"true", True), 0x66: (b"false", False), 0x6E: (b"null", None)}[c]
            for i, expected in enumerate(word):
                if pos + i >= n or buf[pos + i] != expected:
                    raise _ParseError(_ERR_VALUE, pos + i)
            return value, pos + len(word)
        match = _NUMBER_RE.match(buf, pos)
        if match is not None:
            end = match.end()
            if end >= n or buf[end] not in _NUMBER_TAIL:
                if match.group(3):
                    if match.group(3) == b"NaN":
                        return math.nan, end
                    return (-math.inf if c == 0x2D else math.inf), end
                text = match.group(0)
                if match.group(1) is None and match.group(2) is None:
                    value = _int_or_double(text)
                else:
                    value = float(text)
                if isinstance(value, float) and math.isinf(value):
                    raise _ParseError(_ERR_TOO_BIG, pos)
                return value, end
        return self._number_slow(pos)

    def _number_slow(self, start: int) -> tuple[Any, int]:
        """Char-by-char rapidjson ParseNumber, for the inputs the regex does not settle."""
        buf, n = self.buf, self.n

        def peek(i: int) -> int:
            return buf[i] if i < n else 0

        i = start
        minus = peek(i) == 0x2D
        if minus:
            i += 1
        c = peek(i)
        if c == 0x30:
            i += 1
        elif 0x31 <= c <= 0x39:
            while 0x30 <= peek(i) <= 0x39:
                i += 1
        elif c == 0x4E:  # NaN
            for expected in b"NaN":
                if peek(i) != expected:
                    raise _ParseError(_ERR_VALUE, i)
                i += 1
            return math.nan, i
        elif c == 0x49:  # Inf, Infinity
            for expected in b"Inf":
                if peek(i) != expected:
                    raise _ParseError(_ERR_VALUE, i)
                i += 1
            if peek(i) == 0x69:
                for expected in b"inity":
                    if peek(i) != expected:
                        raise _ParseError(_ERR_VALUE, i)
                    i += 1
            return (-math.inf if minus else math.inf), i
        else:
            raise _ParseError(_ERR_VALUE, i)
        is_double = False
        if peek(i) == 0x2E:
            i += 1
            if not 0x30 <= peek(i) <= 0x39:
                raise _ParseError(_ERR_FRACTION, i)
            while 0x30 <= peek(i) <= 0x39:
                i += 1
            is_double = True
        if peek(i) in (0x65, 0x45):
            i += 1
            if peek(i) in (0x2B, 0x2D):
                i += 1
            if not 0x30 <= peek(i) <= 0x39:
                raise _ParseError(_ERR_EXPONENT, i)
            while 0x30 <= peek(i) <= 0x39:
                i += 1
            is_double = True
        text = buf[start:i]
        value = float(text) if is_double else _int_or_double(text)
        if isinstance(value, float) and math.isinf(value):
            raise _ParseError(_ERR_TOO_BIG, start)
        return value, i

    def _string(self, pos: int) -> tuple[str, int]:
        buf, n = self.buf, self.n
        match = _SIMPLE_STRING_RE.match(buf, pos)
        if match is not None:
            return match.group(1).decode("utf-8", "surrogateescape"), match.end()
        out = bytearray()
        i = pos + 1
        while True:
            if i >= n:
                raise _ParseError(_ERR_QUOTE, i)
            c = buf[i]
            if c == 0x22:
                return out.decode("utf-8", "surrogateescape"), i + 1
            if c == 0x5C:
                escape_offset = i
                i += 1
                e = buf[i] if i < n else 0
                if e in _SIMPLE_ESCAPES:
                    out += _SIMPLE_ESCAPES[e]
                    i += 1
                elif e == 0x75:  # \uXXXX
                    code, i = self._hex4(i + 1, escape_offset)
                    if 0xD800 <= code <= 0xDFFF:
                        if code > 0xDBFF or buf[i : i + 2] != b"\\u":
                            raise _ParseError(_ERR_SURROGATE, escape_offset)
                        low, i = self._hex4(i + 2, escape_offset)
                        if not 0xDC00 <= low <= 0xDFFF:
                            raise _ParseError(_ERR_SURROGATE, escape_offset)
                        code = (((code - 0xD800) << 10) | (low - 0xDC00)) + 0x10000
                    out += chr(code).encode("utf-8")
                else:
                    raise _ParseError(_ERR_ESCAPE, escape_offset)
            elif c < 0x20:
                raise _ParseError(_ERR_ENCODING, i)
            else:
                out.append(c)
                i += 1

    def _hex4(self, i: int, escape_offset: int) -> tuple[int, int]:
        chunk = self.buf[i : i + 4]
        if len(chunk) != 4 or any(ch not in _HEX for ch in chunk):
            raise _ParseError(_ERR_HEX, escape_offset)
        return int(chunk, 16), i + 4


def _first_wins(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        out.setdefault(key, value)
    return out


def _stdlib_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise _Fallback
    return value


def _stdlib_int(text: str) -> int | float:
    if len(text) <= 21:
        value = int(text)
        if _INT64_MIN <= value <= _UINT64_MAX:
            return value
    as_float = float(text)
    if math.isinf(as_float):
        raise _Fallback
    return as_float


_STDLIB_DECODER = json.JSONDecoder(
    object_pairs_hook=_first_wins, parse_float=_stdlib_float, parse_int=_stdlib_int
)


def _stdlib_parse(body: bytes) -> Any:
    # Python's decoder is fast and accepts NaN/Infinity/-Infinity and (with raw_decode) trailing
    # bytes, but not Inf/-NaN, lone-surrogate checks or NUL-as-end: those go to _RapidParser.
    if b"\0" in body or _SURROGATE_ESCAPE_RE.search(body):
        raise _Fallback
    text = body.decode("utf-8", "surrogateescape")
    start = len(text) - len(text.lstrip(" \t\n\r"))
    value, _ = _STDLIB_DECODER.raw_decode(text, start)
    return value


def parse_json(body: bytes | bytearray | memoryview | str) -> Any:
    """Parse a request body with TF Serving's leniency (see module docstring).

    Raises ``InvalidArgument`` with TF Serving's texts: ``JSON Parse error: The document is empty``
    for an empty body, ``JSON Parse error: <rapidjson reason> at offset: <byte offset>`` otherwise.
    """
    if isinstance(body, str):
        body = body.encode("utf-8", "surrogateescape")
    elif not isinstance(body, bytes):
        body = bytes(body)
    if not body:
        raise InvalidArgument("JSON Parse error: The document is empty")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        pass
    try:
        return _stdlib_parse(body)
    except (ValueError, RecursionError, OverflowError, _Fallback):
        pass
    try:
        return _RapidParser(body).parse()
    except _ParseError as err:
        raise InvalidArgument(f"JSON Parse error: {err.reason} at offset: {err.offset}") from None


def request_signature_name(doc: Any) -> str:
    """Check the parsed body is an object whose ``signature_name`` (if any) is a string; return it."""
    if not isinstance(doc, dict):
        raise InvalidArgument(f"JSON Value: {json_debug_string(doc)} Is not object")
    name = doc.get("signature_name", "")
    if not isinstance(name, str):
        raise InvalidArgument(
            f"JSON Value: {json_debug_string(doc)} not formatted correctly. "
            "'signature_name' key must be a string value."
        )
    return name
