"""Which arm answers a request: ``split`` (weighted, sticky per key), ``shadow`` (production answers,
a fraction mirrored to experimental) or ``off`` (production only)."""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from typing import Literal

from nbserve.errors import InvalidArgument

Mode = Literal["split", "shadow", "off"]
MODES: tuple[Mode, ...] = ("split", "shadow", "off")
PRODUCTION, EXPERIMENTAL = "production", "experimental"
_BUCKETS = 10_000


def bucket(key: str) -> float:
    """A key's stable place in [0, 100): the same key always lands in the same bucket."""
    digest = hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % _BUCKETS * 100 / _BUCKETS


@dataclass(frozen=True)
class Router:
    """An immutable routing decision table; replaced whole, so readers never see half a change."""

    mode: Mode = "split"
    split: float = 10.0  # % of requests the experimental arm answers in split mode
    shadow: float = 100.0  # % of requests mirrored to experimental in shadow mode

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise InvalidArgument(f"Unknown experiment mode {self.mode!r}; use one of {', '.join(MODES)}")
        for name in ("split", "shadow"):
            if not 0 <= getattr(self, name) <= 100:
                raise InvalidArgument(f"{name} must be a percentage in [0, 100], got {getattr(self, name)}")

    def arm(self, key: str | None = None) -> str:
        """The arm that answers: experimental for ``split`` % of keys (or of random draws)."""
        if self.mode != "split":
            return PRODUCTION
        place = bucket(key) if key else random.random() * 100
        return EXPERIMENTAL if place < self.split else PRODUCTION

    def mirror(self) -> bool:
        """Whether to mirror this request to the experimental arm (shadow mode)."""
        return self.mode == "shadow" and random.random() * 100 < self.shadow
