"""An A/B experiment on one model: routes unpinned requests between a production and an experimental
arm (versions or labels), records outcomes, takes label feedback, and promotes or rolls back."""

from __future__ import annotations

import functools
import itertools
import secrets
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from nbserve.codecs.dtypes import numpy_dtype
from nbserve.errors import FailedPrecondition, InvalidArgument, NotFound, ServingError
from nbserve.experiments.router import EXPERIMENTAL, PRODUCTION, Mode, Router
from nbserve.experiments.shadow import Inputs, Mirror, Run, ShadowQueue
from nbserve.experiments.stats import Agreement, ArmStats, predictions, scores, two_proportion_test

if TYPE_CHECKING:
    from nbserve.dataplane import Dataplane, InputDecoder, ModelSpec

Target = int | str  # a version, or a version label
Result = TypeVar("Result")
STABLE = "stable"
_ANSWERS = 100_000  # request ids kept for feedback
_MAX_PREDICTION_BYTES = 4096
_TIMELINE = 600


@dataclass(frozen=True)
class Arms:
    production: Target
    experimental: Target


class Experiment:
    """Production vs experimental for requests naming ``model`` without a version or label.

    ``mode``, ``split`` (% answered by experimental) and ``shadow`` (% mirrored) may be changed at any
    time. Shadow runs happen in batches on one background thread behind a bounded queue
    (``shadow_queue`` requests); mirrors arriving when it is full are dropped and counted. In shadow
    mode the experimental arm's latencies are those of its batched shadow runs."""

    def __init__(
        self,
        dataplane: Dataplane,
        model: str,
        production: Target,
        experimental: Target,
        *,
        mode: Mode = "split",
        split: float = 10.0,
        shadow: float = 100.0,
        keep: int = 8,
        shadow_queue: int = 1024,
        tolerance: float = 1e-6,
    ) -> None:
        self.model = model
        self.tolerance = tolerance  # |Δ| under which a non-class prediction counts as correct
        self.dropped = 0
        self._dataplane = dataplane
        self._router = Router(mode, split, shadow)
        self._arms = Arms(production, experimental)
        self._stats = {PRODUCTION: ArmStats(), EXPERIMENTAL: ArmStats()}
        self._agreement = Agreement(keep)
        self._answers: OrderedDict[str, tuple[str, np.ndarray]] = OrderedDict()
        self._timeline: deque[dict[str, Any]] = deque(maxlen=_TIMELINE)
        self._events: list[tuple[float, str, int]] = []
        self._lock = threading.Lock()
        self._swap_lock = threading.Lock()
        self._last_point = 0.0
        self._promoted = False
        self._ids = itertools.count()
        self._prefix = secrets.token_hex(4)
        self.versions()  # both arms must resolve now
        self._shadow = ShadowQueue(self._shadow_done, shadow_queue)

    # -- settings -----------------------------------------------------------------------------------

    @property
    def mode(self) -> Mode:
        return self._router.mode

    @mode.setter
    def mode(self, mode: Mode) -> None:
        self._router = replace(self._router, mode=mode)

    @property
    def split(self) -> float:
        return self._router.split

    @split.setter
    def split(self, percent: float) -> None:
        self._router = replace(self._router, split=float(percent))

    @property
    def shadow(self) -> float:
        return self._router.shadow

    @shadow.setter
    def shadow(self, percent: float) -> None:
        self._router = replace(self._router, shadow=float(percent))

    @property
    def arms(self) -> Arms:
        return self._arms

    def versions(self) -> dict[str, int]:
        """The version each arm resolves to now."""
        return {arm: self._version(getattr(self._arms, arm)) for arm in (PRODUCTION, EXPERIMENTAL)}

    def _version(self, target: Target) -> int:
        if isinstance(target, int):
            self._dataplane.servable(_spec(self.model, target))
            return target
        labels = self._dataplane.manager.labels(self.model)
        if target not in labels:
            raise InvalidArgument(f"Model {self.model} has no version label {target!r} (labels: {labels})")
        return labels[target]

    # -- the request path (called by the dataplane) ------------------------------------------------

    def predict(self, spec: ModelSpec, decode_inputs: InputDecoder, output_filter: Sequence[str] = ()) -> Any:
        """A Predict through the experiment; its shadow run reuses the decoded inputs."""
        decoded: list[Inputs] = []

        def decode(signature: Any) -> Inputs:
            if not decoded:
                decoded.append(decode_inputs(signature))
            return decoded[0]

        def run(pinned: ModelSpec, inputs: Inputs) -> np.ndarray:
            return output_array(self._dataplane.predict(pinned, lambda signature: inputs, output_filter))

        def call(pinned: ModelSpec) -> Any:
            return self._dataplane.predict(pinned, decode, output_filter)

        return self._serve(spec, call, lambda: decoded[0], run, ("predict", tuple(output_filter)))

    def examples(self, spec: ModelSpec, api: str, examples: Sequence[bytes]) -> Any:
        """A Classify or Regress (``api``) of serialized tf.Examples through the experiment."""
        method = getattr(self._dataplane, api)

        def run(pinned: ModelSpec, inputs: Inputs) -> np.ndarray:
            return output_array(method(pinned, list(inputs["examples"])))

        def inputs() -> Inputs:
            batch = np.empty(len(examples), dtype=object)
            batch[:] = list(examples)
            return {"examples": batch}

        return self._serve(spec, lambda pinned: method(pinned, examples), inputs, run, api)

    def _serve(
        self,
        spec: ModelSpec,
        call: Callable[[ModelSpec], Result],
        inputs: Callable[[], Inputs],
        run: Run,
        kind: Hashable,
    ) -> Result:
        """Answer with the arm the router picks (``call`` runs a pinned spec); returns the result with
        a request id; in shadow mode queues a mirror (``run`` answers a batch of them)."""
        router, arms = self._router, self._arms
        arm = router.arm(spec.key)
        start = time.perf_counter()
        try:
            result = call(_pin(spec, getattr(arms, arm)))
        except Exception:
            self._record(arm, time.perf_counter() - start, False)
            raise
        elapsed = time.perf_counter() - start
        request_id = f"{self._prefix}-{next(self._ids):x}"
        output = output_array(result)
        self._record(arm, elapsed, True, request_id, output)
        if arm == PRODUCTION and router.mirror():
            mirror = Mirror(_pin(spec, arms.experimental), inputs(), output, run, kind)
            if not self._shadow.offer(mirror):
                with self._lock:
                    self.dropped += 1
        return replace(result, served=replace(result.served, request_id=request_id))  # type: ignore[type-var]

    def production_spec(self, spec: ModelSpec) -> ModelSpec:
        """``spec`` pinned to the production arm (MultiInference: no split, no statistics)."""
        return _pin(spec, self._arms.production)

    def _record(
        self, arm: str, seconds: float, ok: bool, request_id: str = "", output: np.ndarray | None = None
    ) -> None:
        predicted = predictions(output) if output is not None else None
        with self._lock:
            self._stats[arm].record(seconds, ok)
            if predicted is not None and predicted.nbytes <= _MAX_PREDICTION_BYTES:
                self._answers[request_id] = (arm, predicted)
                if len(self._answers) > _ANSWERS:
                    self._answers.popitem(last=False)
            self._tick()

    def _shadow_done(self, mirrors: list[Mirror], output: np.ndarray | None, seconds: float) -> None:
        """Record one batched shadow run: its latency, and each mirror's agreement with production."""
        production = np.concatenate([m.production for m in mirrors])
        ok = output is not None and len(output) == len(production)
        inputs = [next(iter(m.inputs.values())) if len(m.inputs) == 1 else None for m in mirrors]
        rows = np.concatenate(inputs) if all(i is not None for i in inputs) else None
        with self._lock:
            self._stats[EXPERIMENTAL].record(seconds, ok, len(mirrors))
            if ok:
                self._agreement.add(production, output, rows)  # type: ignore[arg-type]
            self._tick()

    def _tick(self) -> None:
        """Add a timeline point at most once a second (the caller holds the lock)."""
        now = time.time()
        if now - self._last_point >= 1.0:
            self._last_point = now
            self._timeline.append(self._point(now))

    def _point(self, now: float) -> dict[str, Any]:
        accuracy = {arm: self._stats[arm].accuracy() for arm in (PRODUCTION, EXPERIMENTAL)}
        return {"time": now, **self._agreement.summary(), "accuracy": accuracy}

    def wait_shadow(self, timeout: float = 10.0) -> bool:
        """Wait until no shadow run is queued (tests, benchmarks); True when drained."""
        deadline = time.monotonic() + timeout
        while self._shadow.pending and time.monotonic() < deadline:
            time.sleep(0.01)
        return not self._shadow.pending

    # -- labels -------------------------------------------------------------------------------------

    def feedback(self, request_id: str, label: Any) -> bool:
        """The true label(s) of an answered request; returns whether its prediction was correct."""
        with self._lock:
            entry = self._answers.pop(request_id, None)
        if entry is None:
            raise NotFound(
                f"No answer with request id {request_id!r} is waiting for feedback in this experiment"
            )
        arm, predicted = entry
        correct, total = self._score(predicted, np.asarray(label))
        with self._lock:
            self._stats[arm].label(correct, total)
            self._tick()
        return correct == total

    def evaluate(self, dataset: Iterable[tuple[Any, Any]]) -> dict[str, Any]:
        """Run both arms on labelled batches ``(inputs, labels)`` (inputs: an array for a one-input
        signature, or a dict); adds to the arms' accuracy and returns the snapshot's comparison."""
        for inputs, labels in dataset:
            truth = np.asarray(labels)
            for arm in (PRODUCTION, EXPERIMENTAL):
                spec = _spec(self.model, getattr(self._arms, arm))
                result = self._dataplane.predict(spec, functools.partial(_feed, inputs=inputs))
                correct, total = self._score(predictions(output_array(result)), truth)
                with self._lock:
                    self._stats[arm].label(correct, total)
        with self._lock:
            self._tick()
        return self.snapshot()["comparison"]

    def _score(self, predicted: np.ndarray, truth: np.ndarray) -> tuple[int, int]:
        if predicted.ndim == 1:
            return int((predicted == truth.reshape(-1)).sum()), len(predicted)
        rows = len(predicted)
        diff = np.abs(predicted.astype(np.float64) - truth.reshape(rows, -1).astype(np.float64))
        return int((diff <= self.tolerance).all(axis=1).sum()), rows

    # -- promote / rollback -------------------------------------------------------------------------

    def promote(self) -> dict[str, int]:
        """Make the experimental version production (moving the production label, or ``stable`` when
        it points at the production version) and the old production the experimental arm."""
        return self._swap(promote=True)

    def rollback(self) -> dict[str, int]:
        """Undo ``promote``: the previous production version serves again."""
        return self._swap(promote=False)

    def _swap(self, promote: bool) -> dict[str, int]:
        with self._swap_lock:
            if self._promoted == promote:
                raise FailedPrecondition(
                    "Already promoted" if promote else "Nothing to roll back: not promoted"
                )
            arms, versions = self._arms, self.versions()
            old, new = versions[PRODUCTION], versions[EXPERIMENTAL]
            manager = self._dataplane.manager
            # Labels first: each set_label is one atomic switch; both arms stay AVAILABLE throughout.
            if isinstance(arms.production, str):
                manager.set_label(self.model, arms.production, new)
            elif manager.labels(self.model).get(STABLE) == old:
                manager.set_label(self.model, STABLE, new)
            if isinstance(arms.experimental, str):
                manager.set_label(self.model, arms.experimental, old)
            with self._lock:
                if isinstance(arms.production, int) or isinstance(arms.experimental, int):
                    self._arms = Arms(
                        arms.experimental if isinstance(arms.experimental, int) else arms.production,
                        arms.production if isinstance(arms.production, int) else arms.experimental,
                    )
                self._stats = {PRODUCTION: self._stats[EXPERIMENTAL], EXPERIMENTAL: self._stats[PRODUCTION]}
                self._promoted = promote
                self._events.append((time.time(), "promote" if promote else "rollback", new))
            return self.versions()

    # -- reading ------------------------------------------------------------------------------------

    def latencies(self, arm: str) -> np.ndarray:
        """Recent latencies of an arm in seconds."""
        with self._lock:
            return np.asarray(self._stats[arm].latencies)

    def snapshot(self) -> dict[str, Any]:
        """Everything the widget shows: settings, per-arm statistics, shadow agreement and the worst
        disagreements, accuracy comparison with its verdict, timeline and promote/rollback events."""
        versions = self.versions()
        with self._lock:
            stats = {arm: self._stats[arm].summary() for arm in (PRODUCTION, EXPERIMENTAL)}
            production, experimental = self._stats[PRODUCTION], self._stats[EXPERIMENTAL]
            test = two_proportion_test(
                production.correct, production.labelled, experimental.correct, experimental.labelled
            )
            shadow = {**self._agreement.summary(), "dropped": self.dropped, "queued": self._shadow.pending}
            worst, timeline, events = self._agreement.worst(), list(self._timeline), list(self._events)
        return {
            "model": self.model, "mode": self.mode, "split": self.split, "shadow": self.shadow,
            "arms": {PRODUCTION: self._arms.production, EXPERIMENTAL: self._arms.experimental},
            "versions": versions, "stats": stats, "shadow_stats": shadow,
            "comparison": {**test.__dict__, "verdict": test.verdict},
            "disagreements": worst, "timeline": timeline, "events": events, "promoted": self._promoted,
        }  # fmt: skip

    def table(self) -> tuple[list[str], list[list[str]]]:
        """Header and rows of the per-arm table (text and HTML reprs, the widget)."""
        snap = self.snapshot()
        header = ["arm", "target", "version", "requests", "errors", "p50 ms", "p95 ms", "p99 ms", "accuracy"]
        rows = []
        for arm, s in snap["stats"].items():
            low, high = s["accuracy_ci"]
            accuracy = (
                f"{s['accuracy']:.3f} [{low:.3f}, {high:.3f}] n={s['labelled']}" if s["labelled"] else "-"
            )
            latency = [f"{s[k]:.2f}" for k in ("p50_ms", "p95_ms", "p99_ms")]
            target, version = str(snap["arms"][arm]), str(snap["versions"][arm])
            rows.append([arm, target, version, str(s["count"]), str(s["errors"]), *latency, accuracy])
        return header, rows

    def _repr_html_(self) -> str:
        from nbserve.tables import html_table

        header, rows = self.table()
        snap = self.snapshot()
        caption = f"experiment on {self.model}: {self.mode} — {snap['comparison']['verdict']}"
        return html_table(header, rows, caption)

    def close(self) -> None:
        """Stop the shadow thread (the registry's ``remove`` also stops routing)."""
        self._shadow.close()


def output_array(result: Any) -> np.ndarray:
    """The output compared and scored: class scores when a Predict has them, else its first output;
    Classify's scores; Regress's values."""
    outputs = getattr(result, "outputs", None)
    if outputs is not None:
        chosen = next((k for k in sorted(outputs) if scores(np.asarray(outputs[k]))), None)
        return np.asarray(outputs[chosen or sorted(outputs)[0]])
    if hasattr(result, "classifications"):
        return np.asarray([[score for _, score in row] for row in result.classifications], np.float32)
    return np.asarray(result.values)


def _spec(model: str, target: Target, signature_name: str = "") -> ModelSpec:
    from nbserve.dataplane import ModelSpec

    return _pin(ModelSpec(model, signature_name=signature_name), target)


def _pin(spec: ModelSpec, target: Target) -> ModelSpec:
    if isinstance(target, int):
        return replace(spec, version=target, label=None)
    return replace(spec, version=None, label=target)


def _feed(signature: Any, inputs: Any) -> Mapping[str, np.ndarray]:
    if isinstance(inputs, Mapping):
        return {k: np.asarray(v) for k, v in inputs.items()}
    if len(signature.inputs) != 1:
        raise InvalidArgument(
            f"Signature {signature.name} has inputs {sorted(signature.inputs)}: pass a dict"
        )
    info = next(iter(signature.inputs.values()))
    try:
        dtype = numpy_dtype(info.dtype) if info.dtype else None
    except ServingError:
        dtype = None
    return {next(iter(signature.inputs)): np.asarray(inputs, dtype=dtype)}
