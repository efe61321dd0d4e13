"""Experiment statistics against values computed by hand, and the router's split and stickiness."""

from __future__ import annotations

import math

import numpy as np
import pytest

from nbserve.errors import InvalidArgument
from nbserve.experiments.router import EXPERIMENTAL, PRODUCTION, Router, bucket
from nbserve.experiments.stats import (
    Agreement,
    ArmStats,
    percentiles,
    two_proportion_test,
    wilson_interval,
)


def test_percentiles_interpolate_linearly() -> None:
    # ranks 0..9: p50 at 4.5 -> 5.5; p95 at 8.55 -> 9.55; p99 at 8.91 -> 9.91
    assert percentiles(range(1, 11)) == pytest.approx({"p50": 5.5, "p95": 9.55, "p99": 9.91})
    assert all(math.isnan(v) for v in percentiles([]).values())


def test_arm_summary_in_milliseconds() -> None:
    arm = ArmStats()
    for ms in range(1, 11):
        arm.record(ms / 1000, ok=ms != 3)
    arm.label(8, 10)
    summary = arm.summary()
    assert (summary["count"], summary["errors"], summary["p50_ms"]) == (10, 1, pytest.approx(5.5))
    assert summary["accuracy"] == 0.8


def test_wilson_interval_by_hand() -> None:
    # p = .8, z² = 3.8415: centre (.8 + .19207) / 1.38415 = .71674, half 1.96·√(.016 + .0096037) / 1.38415
    low, high = wilson_interval(8, 10)
    assert (low, high) == (pytest.approx(0.49016, abs=1e-4), pytest.approx(0.94332, abs=1e-4))
    assert wilson_interval(0, 0) == (0.0, 1.0)
    assert wilson_interval(10, 10)[1] == pytest.approx(1.0)


def test_two_proportion_z_test_by_hand() -> None:
    # pooled .85: se = √(.85·.15·(1/100 + 1/100)) = .050498, z = .1 / .050498 = 1.9803, p = .04767
    result = two_proportion_test(80, 100, 90, 100)
    assert result.z == pytest.approx(1.9803, abs=1e-4)
    assert result.p_value == pytest.approx(0.04767, abs=1e-4)
    assert result.significant and "experimental is more accurate" in result.verdict
    # unpooled se = √(.0016 + .0009) = .05: .1 ± 1.96·.05
    assert result.interval == (pytest.approx(0.002, abs=1e-4), pytest.approx(0.198, abs=1e-4))
    # pooled .475: se = .070622, z = .70799, p = .4789
    close = two_proportion_test(45, 100, 50, 100)
    assert close.p_value == pytest.approx(0.4789, abs=1e-3)
    assert not close.significant and close.verdict.startswith("not real yet")
    assert two_proportion_test(0, 0, 1, 2).verdict == "not enough labels yet"


def test_agreement_top1_and_worst_rows() -> None:
    agreement = Agreement(keep=2)
    production = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]], np.float32)
    experimental = np.array([[0.8, 0.2], [0.7, 0.3], [0.6, 0.4]], np.float32)
    inputs = np.arange(3 * 4).reshape(3, 4)
    agreement.add(production, experimental, inputs)
    summary = agreement.summary()
    assert summary["agreement"] == pytest.approx(2 / 3) and summary["pairs"] == 3
    worst = agreement.worst()
    assert worst[0].score == pytest.approx(1.5) and worst[0].input.tolist() == [4, 5, 6, 7]  # top-1 differs
    assert worst[1].score == pytest.approx(0.1) and len(worst) == 2  # the identical row is not kept


def test_agreement_mean_absolute_difference() -> None:
    agreement = Agreement()
    agreement.add(np.array([[1.0], [2.0], [3.0]]), np.array([[1.0], [2.5], [5.0]]), None)
    assert agreement.summary()["mean_abs_diff"] == pytest.approx((0 + 0.5 + 2) / 3)
    assert [d.score for d in agreement.worst()] == [2.0, 0.5]


def test_random_split_near_target() -> None:
    router = Router("split", 10)
    share = sum(router.arm() == EXPERIMENTAL for _ in range(20_000)) / 20_000
    assert abs(share - 0.10) < 0.01


def test_sticky_keys_and_modes() -> None:
    router = Router("split", 30)
    keys = [f"user-{i}" for i in range(2000)]
    first = [router.arm(k) for k in keys]
    assert [router.arm(k) for k in keys] == first
    assert abs(first.count(EXPERIMENTAL) / len(keys) - 0.30) < 0.05
    assert all(0 <= bucket(k) < 100 for k in keys)
    assert {Router("shadow", 10).arm(k) for k in keys} == {PRODUCTION}
    assert not Router("off", shadow=100).mirror() and Router("shadow", shadow=100).mirror()
    with pytest.raises(InvalidArgument):
        Router("canary")
    with pytest.raises(InvalidArgument):
        Router("split", 101)
