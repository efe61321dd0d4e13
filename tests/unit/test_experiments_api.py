"""The Experiment API on a real in-process ``nbserve.Server`` serving real SavedModels: routing, shadow
comparison, feedback, evaluate, promote / rollback, the A/B widget and the ``%nbserve ab`` magic."""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import tensorflow as tf

from nbserve import Server
from nbserve.dataplane import ModelSpec, PredictResult
from nbserve.errors import FailedPrecondition, NotFound
from nbserve.experiments import EXPERIMENTAL, PRODUCTION, Experiment

sys.path.insert(0, os.path.dirname(os.path.dirname(__file__)))

from model_factory import install_version  # noqa: E402

LABELS = {"stable": 1, "canary": 2}


class Classifier(tf.Module):
    """Two class scores ``[1 - sigmoid(x), sigmoid(x)]``; ``flip`` swaps them (top-1 always differs)."""

    def __init__(self, flip: bool) -> None:
        super().__init__()
        self.flip = flip

    @tf.function(input_signature=[tf.TensorSpec([None, 1], tf.float32, name="x")])
    def predict(self, x: tf.Tensor) -> dict[str, tf.Tensor]:
        p = tf.sigmoid(x)
        scores = tf.concat([p, 1 - p] if self.flip else [1 - p, p], axis=1)
        return {"y": scores}


def expected(x: np.ndarray, flip: bool) -> np.ndarray:
    p = 1 / (1 + np.exp(-x[:, :1]))
    out = np.hstack([1 - p, p]).astype(np.float32)
    return out[:, ::-1] if flip else out


@pytest.fixture(scope="module")
def base_path(tmp_path_factory: pytest.TempPathFactory) -> str:
    root = tmp_path_factory.mktemp("ab")
    base = root / "m"
    for version, flip in ((1, False), (2, True)):
        module = Classifier(flip)
        written = str(root / f"written-{version}")
        tf.saved_model.save(module, written, signatures={"serving_default": module.predict})
        install_version(str(base), version, written)
    return str(base)


@pytest.fixture(scope="module")
def running(base_path: str) -> Iterator[Server]:
    server = Server(port=None, rest_api_port=None).start()
    server.load("m", base_path, policy="all", labels=LABELS)
    yield server
    server.stop()


@pytest.fixture
def server(running: Server) -> Iterator[Server]:
    """The module's server, with its labels put back and no experiment after each test."""
    yield running
    running.end_experiment("m")
    for label, version in LABELS.items():
        running.set_label("m", label, version)


def ask(server: Server, x: float, key: str | None = None) -> PredictResult:
    inputs = {"x": np.array([[x]], np.float32)}
    assert server.dataplane is not None
    return server.dataplane.predict(ModelSpec("m", key=key), lambda signature: inputs)


def labels(server: Server) -> dict[str, int]:
    [model] = [m for m in server.models() if m.name == "m"]
    return dict(model.labels)


def test_split_routes_and_counts(server: Server) -> None:
    experiment = server.experiment("m", production="stable", experimental="canary", split=25)
    served = [ask(server, 1.0).served.version for _ in range(4000)]
    assert abs(served.count(2) / 4000 - 0.25) < 0.03
    stats = experiment.snapshot()["stats"]
    assert (stats[PRODUCTION]["count"], stats[EXPERIMENTAL]["count"]) == (served.count(1), served.count(2))
    assert stats[PRODUCTION]["p50_ms"] > 0
    sticky = {ask(server, 1.0, key="alice").served.version for _ in range(50)}
    assert len(sticky) == 1


def test_pinned_requests_bypass(server: Server) -> None:
    server.experiment("m", production="stable", experimental="canary", split=100)
    inputs = {"x": np.array([[1.0]], np.float32)}
    assert server.dataplane is not None
    result = server.dataplane.predict(ModelSpec("m", version=1), lambda signature: inputs)
    assert result.served.version == 1 and result.served.request_id is None


def test_shadow_keeps_production_answers_and_finds_disagreement(server: Server) -> None:
    experiment = server.experiment("m", production="stable", experimental="canary", mode="shadow", shadow=100)
    for x in np.linspace(-3, 3, 50):
        result = ask(server, float(x))
        assert result.served.version == 1
        np.testing.assert_allclose(
            result.outputs["y"], expected(np.array([[x]], np.float32), False), rtol=1e-6
        )
    assert experiment.wait_shadow()
    shadow = experiment.snapshot()["shadow_stats"]
    assert shadow["pairs"] + shadow["dropped"] == 50 and shadow["agreement"] < 0.1
    worst = experiment.snapshot()["disagreements"]
    assert worst and abs(float(worst[0].input[0])) == pytest.approx(3.0)  # most confident flips


def test_shadow_queue_drops_when_full(server: Server) -> None:
    """The experimental arm is a live version of ``m`` that holds its shadow run until released, so
    the one-slot queue is full for certain while the next requests arrive."""
    entered, release = threading.Event(), threading.Event()
    calls = 0

    def held(x: np.ndarray) -> dict[str, np.ndarray]:
        nonlocal calls
        calls += 1
        if calls > 1:  # the first call is the trace on zeros
            entered.set()
            assert release.wait(10)
        return {"y": expected(x, True)}

    spec = tf.TensorSpec([None, 1], tf.float32, name="x")
    version = server.serve(held, "m", version=9, input_signature=spec)
    assert server.dataplane is not None
    experiment = Experiment(server.dataplane, "m", "stable", version, mode="shadow", shadow_queue=1)
    server.dataplane.experiments = {**server.dataplane.experiments, "m": experiment}
    try:
        ask(server, 1.0)
        assert entered.wait(10)  # the shadow thread runs the first mirror and waits
        for _ in range(4):  # one fits the queue, three are dropped
            ask(server, 1.0)
        assert experiment.snapshot()["shadow_stats"]["dropped"] == 3
        release.set()
        assert experiment.wait_shadow()
        shadow = experiment.snapshot()["shadow_stats"]
        assert shadow["dropped"] >= 3 and shadow["pairs"] + shadow["dropped"] == 5
    finally:
        release.set()
        server.end_experiment("m")
        experiment.close()
        server.unserve("m", version)


def test_feedback_and_evaluate(server: Server) -> None:
    experiment = server.experiment("m", production="stable", experimental="canary", split=50)
    for i in range(200):
        result = ask(server, 2.0, key=f"k{i}")
        experiment.feedback(result.served.request_id, 1)  # class 1 is right for x > 0: version 1 is right
    stats = experiment.snapshot()["stats"]
    assert stats[PRODUCTION]["accuracy"] == 1.0 and stats[EXPERIMENTAL]["accuracy"] == 0.0
    with pytest.raises(NotFound):
        experiment.feedback("nope", 1)
    x = np.linspace(0.1, 3, 40, dtype=np.float32).reshape(-1, 1)
    comparison = experiment.evaluate([(x, np.ones(40, int))])
    assert comparison["significant"] and comparison["difference"] < 0
    assert "production is more accurate" in comparison["verdict"]


def test_promote_and_rollback_move_labels(server: Server) -> None:
    experiment = server.experiment("m", production="stable", experimental="canary", split=0)
    assert experiment.promote() == {PRODUCTION: 2, EXPERIMENTAL: 1}
    assert labels(server) == {"stable": 2, "canary": 1}
    assert ask(server, 1.0).served.version == 2
    with pytest.raises(FailedPrecondition):
        experiment.promote()
    assert experiment.rollback() == {PRODUCTION: 1, EXPERIMENTAL: 2}
    assert labels(server) == {"stable": 1, "canary": 2}
    assert ask(server, 1.0).served.version == 1
    assert [event[1] for event in experiment.snapshot()["events"]] == ["promote", "rollback"]


def test_promote_versions_moves_stable(server: Server) -> None:
    experiment = server.experiment("m", production=1, experimental=2, split=0)
    experiment.promote()
    assert experiment.arms.production == 2 and labels(server)["stable"] == 2
    assert ask(server, 1.0).served.version == 2


def test_widget_drives_the_experiment(server: Server) -> None:
    from nbserve.notebook.widgets.ab import ABWidget

    experiment = server.experiment("m", production="stable", experimental="canary", mode="shadow")
    for x in np.linspace(-3, 3, 20):
        ask(server, float(x))
    assert experiment.wait_shadow()
    widget = ABWidget(experiment, interval=5)
    assert "production" in widget.table.value and "agreement" in widget.verdict.value
    assert all(bytes(image.value[:4]) == b"\x89PNG" for image in (widget.latency_plot, widget.timeline_plot))
    assert len(widget.disagreements.children) == 8
    widget.mode.value, widget.split.value = "split", 30
    assert (experiment.mode, experiment.split) == ("split", 30)
    widget.promote_button.click()
    assert labels(server)["stable"] == 2 and "production is now version 2" in widget.status.value
    widget.promote_button.click()
    assert "Already promoted" in widget.status.value
    widget.rollback_button.click()
    assert labels(server)["stable"] == 1
    widget.auto.value = True
    assert widget._timer is not None and widget._timer.is_alive()
    widget.close()
    assert widget._timer is None


def test_thumbnails_only_for_images() -> None:
    from nbserve.experiments.plots import thumbnail

    assert thumbnail(np.random.rand(8, 8, 1)).startswith(b"\x89PNG")
    assert thumbnail(np.zeros(3)) is None and thumbnail(None) is None


def test_ab_magic_starts_an_experiment(base_path: str) -> None:
    """``%nbserve ab`` in a real IPython shell with the extension loaded, on the session's server."""
    from IPython.core.interactiveshell import InteractiveShell

    from nbserve import ServerOptions
    from nbserve.notebook.session import SESSION
    from nbserve.notebook.widgets.ab import ABWidget

    shell = InteractiveShell.instance()
    shell.extension_manager.load_extension("nbserve")
    SESSION.start(ServerOptions(port=None, rest_api_port=None))
    try:
        shell.run_line_magic("nbserve", f"load m {base_path} --policy all")
        session_server = SESSION.require()
        for label, version in LABELS.items():
            session_server.set_label("m", label, version)
        widget = shell.run_line_magic("nbserve", "ab m --production 1 --experimental canary --shadow 50")
        assert isinstance(widget, ABWidget)
        assert session_server.dataplane is not None
        experiment: Any = session_server.dataplane.experiments["m"]
        assert widget.experiment is experiment
        assert (experiment.model, experiment.arms.production, experiment.arms.experimental) == (
            "m",
            1,
            "canary",
        )
        assert (experiment.mode, experiment.split, experiment.shadow) == ("shadow", 10.0, 50.0)
        result = session_server.dataplane.predict(
            ModelSpec("m"), lambda signature: {"x": np.array([[1.0]], np.float32)}
        )
        assert result.served.version == 1 and result.served.request_id is not None
        assert experiment.wait_shadow()
        assert experiment.snapshot()["shadow_stats"]["pairs"] + experiment.dropped <= 1
        widget.close()
    finally:
        SESSION.stop()
