"""File-system source: lists a model's base path and finds its version directories, the way TF
Serving's ``FileSystemStoragePathSource`` does."""

from __future__ import annotations

import os
import re

from nbserve.errors import InvalidArgument

# strtoll-style: surrounding whitespace and a sign are accepted, leading zeros too ("007" is 7).
_VERSION = re.compile(r"^[ \t\n\v\f\r]*([+-]?[0-9]+)[ \t\n\v\f\r]*$")
_INT64_MAX = 2**63 - 1


def parse_version(name: str) -> int | None:
    """The version number a child named ``name`` stands for, or None when it is no version."""
    match = _VERSION.match(name)
    if match is None:
        return None
    version = int(match.group(1))
    # Negative numbers parse in TF too, but no servable can have a negative version.
    return version if 0 <= version <= _INT64_MAX else None


def local_path(base_path: str) -> str:
    """The local file-system path of a base path (``file://`` URIs are accepted)."""
    return base_path[len("file://") :] if base_path.startswith("file://") else base_path


class FileSystemSource:
    """Lists version directories under base paths."""

    def list_versions(self, name: str, base_path: str) -> dict[int, str]:
        """Map version -> path for every integer-named child of ``base_path`` (files count too,
        as in TF; other names such as ``.tmp-3`` are ignored). When two names give the same
        number, the lexicographically later one wins. Raises InvalidArgument if the base path is
        missing (TF's "Could not find base path" error)."""
        root = local_path(base_path)
        try:
            children = sorted(os.listdir(root))
        except OSError as e:
            reason = "No such file or directory" if isinstance(e, FileNotFoundError) else e.strerror
            raise InvalidArgument(
                f"Could not find base path {base_path} for servable {name} with error "
                f"NOT_FOUND: {base_path}; {reason}"
            ) from e
        versions: dict[int, str] = {}
        for child in children:
            version = parse_version(child)
            if version is not None:
                versions[version] = os.path.join(root, child)
        return versions


def version_stamp(path: str) -> tuple[int, ...]:
    """What identifies the content of a version dir for retry decisions: the mtimes of the dir and
    of its saved_model.pb (a re-export replaces one of them)."""
    stamp = []
    for p in (path, os.path.join(path, "saved_model.pb"), os.path.join(path, "saved_model.pbtxt")):
        try:
            st = os.stat(p)
            stamp += [st.st_mtime_ns, st.st_ino, st.st_size]
        except OSError:
            stamp += [0, 0, 0]
    return tuple(stamp)
