"""Version policies: which of the versions on disk a model aspires to serve (TF Serving's
``ServableVersionPolicy``)."""

from __future__ import annotations

from collections.abc import Iterable

from nbserve.manager.config import VersionPolicy


def aspired_versions(on_disk: Iterable[int], policy: VersionPolicy) -> set[int]:
    """``latest``: the N highest (N=0 counts as 1); ``all``: every one; ``specific``: those listed
    that exist on disk."""
    versions = set(on_disk)
    if policy.kind == "all":
        return versions
    if policy.kind == "specific":
        return versions & set(policy.versions)
    if policy.kind == "latest":
        return set(sorted(versions, reverse=True)[: max(policy.num_versions, 1)])
    raise ValueError(f"Unknown version policy kind: {policy.kind!r}")
