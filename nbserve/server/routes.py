"""TF Serving's REST URL grammar: which model, version or label, and which API a ``/v1`` path asks for."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote

from nbserve.errors import InvalidArgument

_POST = re.compile(
    r"/v1/models/([^/:]+)(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?:(classify|regress|predict)",
    re.IGNORECASE,
)
_GET = re.compile(
    r"/v1/models(?:/([^/:]+))?(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?(?:/(metadata))?",
    re.IGNORECASE,
)
_INT64_MAX = 2**63 - 1
POST_APIS = ("predict", "classify", "regress")


@dataclass(frozen=True)
class Route:
    """A parsed ``/v1`` request: ``api`` is predict/classify/regress (POST) or status/metadata (GET)."""

    api: str
    model: str
    version: int | None
    label: str | None


def parse_route(method: str, uri: str) -> Route:
    """Parse a REST path exactly as TF Serving does (the query string is part of what must match)."""
    malformed = InvalidArgument(
        f"Malformed request: {method} {uri}. Expected GET /v1/models/<model>[/versions/<n>|/labels/<l>]"
        "[/metadata] or POST /v1/models/<model>[/versions/<n>|/labels/<l>]:(predict|classify|regress)."
    )
    if method == "POST":
        match = _POST.fullmatch(uri)
        if match is None or match.group(4) not in POST_APIS:
            raise malformed
        api = match.group(4)
    elif method == "GET":
        match = _GET.fullmatch(uri)
        if match is None:
            raise malformed
        if match.group(1) is None:
            raise InvalidArgument("Missing model name in request.")
        api = "metadata" if match.group(4) else "status"
    else:
        raise malformed
    name, version_text, label = match.group(1), match.group(2), match.group(3)
    version = None
    if version_text is not None:
        version = int(version_text)
        if version > _INT64_MAX:
            raise InvalidArgument(f"Failed to convert version: {version_text} to numeric.")
    return Route(api, unquote(name), version, unquote(label) if label is not None else None)
