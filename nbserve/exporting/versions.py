"""Version directories under a model's base path, written atomically: everything goes into a hidden
``.tmp-<version>-<random>`` directory first (the file-system source ignores it) and appears under its
number with one ``os.rename``, so a server polling the base path never sees half a version."""

from __future__ import annotations

import numbers
import os
import secrets
import shutil
from collections.abc import Callable
from typing import TypeVar

from nbserve.errors import AlreadyExists, InvalidArgument
from nbserve.manager.source import local_path, parse_version

__all__ = ["VersionExists", "next_version", "write_version"]

T = TypeVar("T")


class VersionExists(AlreadyExists, FileExistsError):
    """The version directory is already there (also a ``FileExistsError``)."""


def next_version(base_path: str | os.PathLike[str]) -> int:
    """One above the highest version under ``base_path`` (1 when there is none or no base path)."""
    try:
        children = os.listdir(local_path(os.fspath(base_path)))
    except FileNotFoundError:
        return 1
    versions = [v for v in map(parse_version, children) if v is not None]
    return max(versions, default=0) + 1


def write_version(
    base_path: str,
    version: int | None,
    write: Callable[[str], None],
    check: Callable[[str, int], T],
) -> tuple[int, str, T]:
    """``write(temp_dir)``, then ``check(temp_dir, version)``, then rename the temp dir to
    ``base_path/<version>`` (default: ``next_version``). Whatever fails, nothing is left behind.
    Returns the version, its directory and what ``check`` returned."""
    if version is None:
        version = next_version(base_path)
    elif isinstance(version, bool) or not isinstance(version, numbers.Integral) or version < 0:
        raise InvalidArgument(f"version must be a non-negative integer, got {version!r}")
    version = int(version)
    final = os.path.join(base_path, str(version))
    _refuse_existing(final)
    os.makedirs(base_path, exist_ok=True)
    temp = os.path.join(base_path, f".tmp-{version}-{secrets.token_hex(6)}")
    try:
        write(temp)
        checked = check(temp, version)
        _refuse_existing(final)  # another writer may have taken the number meanwhile
        os.rename(temp, final)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    return version, final, checked


def _refuse_existing(path: str) -> None:
    if os.path.lexists(path):
        raise VersionExists(
            f"{path} already exists: versions are never overwritten. Leave version out to take the "
            "next free one, or delete that directory first."
        )
