"""Version policies: which on-disk versions a model aspires to."""

from __future__ import annotations

import pytest

from nbserve.manager import VersionPolicy, aspired_versions


@pytest.mark.parametrize(
    ("on_disk", "policy", "expected"),
    [
        ([1, 2, 3], VersionPolicy(), {3}),
        ([1, 2, 3], VersionPolicy("latest", num_versions=2), {2, 3}),
        ([1, 2, 3], VersionPolicy("latest", num_versions=0), {3}),  # 0 counts as 1
        ([1, 2, 3], VersionPolicy("latest", num_versions=10), {1, 2, 3}),
        ([5, 40, 7], VersionPolicy("latest", num_versions=2), {7, 40}),  # numeric, not lexical
        ([], VersionPolicy(), set()),
        ([1, 2, 3], VersionPolicy("all"), {1, 2, 3}),
        ([], VersionPolicy("all"), set()),
        ([1, 2, 3], VersionPolicy("specific", versions=(2, 9)), {2}),  # missing ones are skipped
        ([1, 2, 3], VersionPolicy("specific", versions=()), set()),
        (iter([4, 4, 2]), VersionPolicy(), {4}),
    ],
)
def test_aspired_versions(on_disk, policy: VersionPolicy, expected: set[int]) -> None:
    assert aspired_versions(on_disk, policy) == expected


def test_unknown_policy_kind() -> None:
    with pytest.raises(ValueError, match="newest"):
        aspired_versions([1], VersionPolicy("newest"))  # type: ignore[arg-type]
