"""FileSystemSource: which children of a base path are versions (TF's storage path source rules)."""

from __future__ import annotations

import os

import pytest

from nbserve.errors import InvalidArgument
from nbserve.manager.source import FileSystemSource, parse_version, version_stamp


@pytest.mark.parametrize(
    ("name", "version"),
    [
        ("1", 1),
        ("00000123", 123),
        ("0", 0),
        ("+5", 5),
        (" 9 ", 9),
        ("9223372036854775807", 2**63 - 1),
        ("9223372036854775808", None),  # beyond int64
        ("-1", None),
        ("1.5", None),
        ("1e3", None),
        ("0x10", None),
        ("", None),
        ("abc", None),
        (".tmp-3", None),
        ("3a", None),
        ("variables", None),
    ],
)
def test_parse_version(name: str, version: int | None) -> None:
    assert parse_version(name) == version


def test_list_versions(tmp_path) -> None:
    for name in ["1", "007", ".tmp-3", "notes", "assets", "10", "010"]:
        (tmp_path / name).mkdir()
    (tmp_path / "12").write_text("plain files count too, as in TF")
    versions = FileSystemSource().list_versions("m", str(tmp_path))
    assert versions == {
        1: str(tmp_path / "1"),
        7: str(tmp_path / "007"),
        10: str(tmp_path / "10"),  # "010" and "10" collide: the later name wins
        12: str(tmp_path / "12"),
    }


def test_empty_base_path_has_no_versions(tmp_path) -> None:
    assert FileSystemSource().list_versions("m", str(tmp_path)) == {}


def test_missing_base_path(tmp_path) -> None:
    missing = str(tmp_path / "nope")
    with pytest.raises(InvalidArgument) as info:
        FileSystemSource().list_versions("m", missing)
    assert info.value.message == (
        f"Could not find base path {missing} for servable m with error "
        f"NOT_FOUND: {missing}; No such file or directory"
    )


def test_file_uri(tmp_path) -> None:
    (tmp_path / "3").mkdir()
    assert FileSystemSource().list_versions("m", f"file://{tmp_path}") == {3: str(tmp_path / "3")}


def test_version_stamp_changes_when_the_model_is_replaced(tmp_path) -> None:
    version = tmp_path / "1"
    version.mkdir()
    empty = version_stamp(str(version))
    (version / "saved_model.pb").write_bytes(b"garbage")
    first = version_stamp(str(version))
    assert first != empty
    (version / "saved_model.pb").write_bytes(b"other garbage")
    assert version_stamp(str(version)) != first
    assert version_stamp(str(version)) == version_stamp(str(version))
    assert version_stamp(str(tmp_path / "missing")) == version_stamp(os.path.join(tmp_path, "missing"))
