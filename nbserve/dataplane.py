"""The transport-neutral dataplane: every Predict / Classify / Regress / metadata / status call,
whichever door (REST, gRPC, Python) it comes in by, is answered here.

Transports decode their wire format into numpy through a callback that receives the resolved
signature (the input dtypes live there), so a request is always decoded against the version that
actually serves it, even while versions swap underneath.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from nbserve.errors import FailedPrecondition, InvalidArgument, NotFound, Unimplemented
from nbserve.isolation import Isolation
from nbserve.manager.config import ModelConfig
from nbserve.manager.manager import Manager, ServableState, VersionStatus
from nbserve.servables.base import Servable
from nbserve.signature import (
    CLASSIFY_METHOD,
    DEFAULT_SERVING_SIGNATURE,
    REGRESS_METHOD,
    Signature,
    TensorInfo,
)

if TYPE_CHECKING:
    from nbserve.experiments import Experiment

DT_STRING = 7


@dataclass(frozen=True)
class ModelSpec:
    """Which servable a request asks for: a model name plus at most one of version or label."""

    name: str
    version: int | None = None
    label: str | None = None
    signature_name: str = ""
    key: str | None = None  # sticky A/B routing key (X-Nbserve-Key / x-nbserve-key)


@dataclass(frozen=True)
class Served:
    """The servable version and signature that answered a request."""

    name: str
    version: int
    signature: Signature
    request_id: str | None = None  # set when an experiment answered (for Experiment.feedback)


@dataclass(frozen=True)
class PredictResult:
    served: Served
    outputs: dict[str, np.ndarray]
    output_infos: dict[str, TensorInfo]


@dataclass(frozen=True)
class ClassifyResult:
    served: Served
    classifications: list[list[tuple[str, float]]]


@dataclass(frozen=True)
class RegressResult:
    served: Served
    values: list[float]


InputDecoder = Callable[[Signature], Mapping[str, np.ndarray]]


class UnknownSignature(FailedPrecondition):
    """A Predict for a signature the servable does not have (REST reports it with its own text)."""

    def __init__(self, key: str, servable: Servable) -> None:
        self.key = key
        self.hint = (
            f"model {servable.name} version {servable.version} has signatures: {_signature_names(servable)}"
        )
        super().__init__(f'Serving signature key "{key}" not found. ({self.hint})')


class Dataplane:
    """Answers inference, metadata, status and config-reload requests against a Manager."""

    isolation: Isolation | None = None  # per-model admission, set by the runtime
    max_instances: int = 0  # --max_instances_per_request (0: no limit)

    def __init__(self, manager: Manager) -> None:
        self.manager = manager
        self.experiments: dict[str, Experiment] = {}  # by model name; see nbserve.experiments

    def experiment(self, spec: ModelSpec) -> Experiment | None:
        """The A/B experiment that routes ``spec``: only requests naming neither version nor label."""
        if spec.version is None and spec.label is None and self.experiments:
            return self.experiments.get(spec.name)
        return None

    # -- resolution ---------------------------------------------------------------------------------

    def servable(self, spec: ModelSpec) -> Servable:
        """The servable a spec names (highest AVAILABLE version when neither version nor label)."""
        if not spec.name:
            raise InvalidArgument("ModelSpec has no name specified. (set model_spec.name to a served model)")
        try:
            return self.manager.servable(spec.name, version=spec.version, label=spec.label)
        except (NotFound, InvalidArgument) as error:
            raise type(error)(f"{error.message} ({self._lookup_hint(spec)})") from None

    def _lookup_hint(self, spec: ModelSpec) -> str:
        """What a request could ask for instead of a model, version or label that is not served."""
        name = spec.name
        if name not in self.manager.model_names():
            served = ", ".join(sorted(self.manager.model_names())) or "none yet"
            return f"no model named {name} is served; served models: {served}"
        try:
            labels = self.manager.labels(name)
            statuses = self.manager.status(name)
        except NotFound:  # unloaded meanwhile
            labels, statuses = {}, []
        if spec.label is not None and spec.version is None:
            listed = ", ".join(f"{k} -> {v}" for k, v in sorted(labels.items()))
            return f"labels of {name}: {listed}" if listed else f"{name} has no version labels"
        available = sorted(s.version for s in statuses if s.state == ServableState.AVAILABLE)
        if not available:
            return f"{name} has no AVAILABLE version now; its model status says why"
        return f"available versions of {name}: {', '.join(map(str, available))}"

    @staticmethod
    def _signature(servable: Servable, signature_name: str) -> Signature:
        key = signature_name or DEFAULT_SERVING_SIGNATURE
        signature = servable.signatures.get(key)
        if signature is None:
            raise UnknownSignature(key, servable)
        return signature

    # -- inference ----------------------------------------------------------------------------------

    def predict(
        self, spec: ModelSpec, decode_inputs: InputDecoder, output_filter: Sequence[str] = ()
    ) -> PredictResult:
        """Run a Predict request. ``decode_inputs`` turns the wire inputs into numpy for the signature."""
        if (experiment := self.experiment(spec)) is not None:
            return experiment.predict(spec, decode_inputs, output_filter)
        servable = self.servable(spec)
        signature = self._signature(servable, spec.signature_name)
        if not signature.inputs:
            raise InvalidArgument(f"Failed to get input map for signature: {signature.name}")
        inputs = dict(decode_inputs(signature))
        _check_input_names(inputs, signature)
        for array in inputs.values():
            self._check_instances(array.shape[0] if array.ndim else 1)
        output_keys = _output_keys(output_filter, signature)
        outputs = servable.run(signature, inputs, output_keys)
        served = Served(servable.name, servable.version, signature)
        return PredictResult(served, outputs, {k: signature.outputs[k] for k in output_keys})

    def classify(self, spec: ModelSpec, examples: Sequence[bytes]) -> ClassifyResult:
        """Classify serialized tf.Examples with a classification signature."""
        if (experiment := self.experiment(spec)) is not None:
            return experiment.examples(spec, "classify", examples)
        servable, signature = self._example_signature(spec, "classify")
        names = set(signature.outputs)
        if not names or not names <= {"classes", "scores"}:
            raise InvalidArgument(
                f"Classification signature {signature.name} must have outputs 'classes' and/or 'scores'; "
                f"it has {sorted(names)}."
            )
        outputs = self._run_examples(servable, signature, examples, sorted(names))
        scores, classes = outputs.get("scores"), outputs.get("classes")
        rows = len(examples)
        width = (scores if scores is not None else classes).reshape(rows, -1).shape[1]
        if scores is None:
            scores = np.zeros((rows, width), np.float32)
        if classes is None:
            classes = np.full((rows, width), b"", dtype=object)
        scores, classes = scores.reshape(rows, -1), classes.reshape(rows, -1)
        result = [
            [(_text(label), float(score)) for label, score in zip(classes[i], scores[i], strict=True)]
            for i in range(rows)
        ]
        return ClassifyResult(Served(servable.name, servable.version, signature), result)

    def regress(self, spec: ModelSpec, examples: Sequence[bytes]) -> RegressResult:
        """Regress serialized tf.Examples with a regression signature (output ``outputs``)."""
        if (experiment := self.experiment(spec)) is not None:
            return experiment.examples(spec, "regress", examples)
        servable, signature = self._example_signature(spec, "regress")
        if set(signature.outputs) != {"outputs"}:
            raise InvalidArgument(
                f"Regression signature {signature.name} must have exactly one output named 'outputs'; "
                f"it has {sorted(signature.outputs)}."
            )
        values = self._run_examples(servable, signature, examples, ["outputs"])["outputs"]
        values = values.reshape(len(examples), -1)
        if values.shape[1] != 1:
            raise InvalidArgument(
                f"Expected output tensor shape to be either [batch_size] or [batch_size, 1] but got "
                f"{list(values.shape)}"
            )
        return RegressResult(Served(servable.name, servable.version, signature), values[:, 0].tolist())

    def multi_inference(
        self, tasks: Sequence[tuple[ModelSpec, str]], examples: Sequence[bytes]
    ) -> list[ClassifyResult | RegressResult]:
        """Run several classify/regress signatures of one model over the same examples, in task order."""
        if not tasks:
            raise InvalidArgument("MultiInferenceRequest must have at least one task.")
        names = {spec.name for spec, _ in tasks}
        if len(names) > 1:
            raise InvalidArgument(
                "All ModelSpecs in a MultiInferenceRequest must access the same model name."
            )
        seen: set[str] = set()
        first = tasks[0][0]
        if (experiment := self.experiment(first)) is not None:
            first = experiment.production_spec(first)  # one arm for every task
        results: list[ClassifyResult | RegressResult] = []
        for spec, method in tasks:
            signature_name = spec.signature_name or DEFAULT_SERVING_SIGNATURE
            if signature_name in seen:
                raise InvalidArgument(f"Duplicate evaluation of signature: {signature_name}")
            seen.add(signature_name)
            pinned = ModelSpec(first.name, first.version, first.label, signature_name)
            if method == CLASSIFY_METHOD:
                results.append(self.classify(pinned, examples))
            elif method == REGRESS_METHOD:
                results.append(self.regress(pinned, examples))
            else:
                raise Unimplemented(
                    f"Unsupported signature method_name: {method}. Use {CLASSIFY_METHOD} or {REGRESS_METHOD}."
                )
        return results

    def _example_signature(self, spec: ModelSpec, api: str) -> tuple[Servable, Signature]:
        servable = self.servable(spec)
        key = spec.signature_name or DEFAULT_SERVING_SIGNATURE
        signature = servable.signatures.get(key)
        if signature is None:
            raise InvalidArgument(
                f"No signature was found with the name: {key} "
                f"(known signatures: {_signature_names(servable)})"
            )
        info = signature.inputs.get("inputs")
        if len(signature.inputs) != 1 or info is None or info.dtype != DT_STRING:
            raise InvalidArgument(
                f"Signature {key} cannot {api} tf.Examples: it needs exactly one DT_STRING input named "
                f"'inputs' (serialized tf.Example), it has {sorted(signature.inputs)}."
            )
        return servable, signature

    def _check_instances(self, count: int) -> None:
        if self.max_instances and count > self.max_instances:
            raise InvalidArgument(
                f"The request has {count} instances; the server takes at most {self.max_instances} per "
                f"request: split it, or raise --max_instances_per_request"
            )

    def _run_examples(
        self, servable: Servable, signature: Signature, examples: Sequence[bytes], keys: list[str]
    ) -> dict[str, np.ndarray]:
        if not examples:
            raise InvalidArgument("Input is empty.")
        self._check_instances(len(examples))
        batch = np.empty(len(examples), dtype=object)
        batch[:] = list(examples)
        return servable.run(signature, {"inputs": batch}, keys)

    # -- model service ------------------------------------------------------------------------------

    def metadata(self, spec: ModelSpec) -> tuple[Servable, dict[str, Signature]]:
        """The servable a spec resolves to and its signatures (GetModelMetadata's signature_def)."""
        servable = self.servable(spec)
        return servable, dict(servable.signatures)

    def status(self, name: str, version: int | None = None) -> list[VersionStatus]:
        """Every version of a model the server has tracked, newest first (labels are ignored, as in TF)."""
        if not name:
            raise InvalidArgument("ModelSpec has no name specified. (set model_spec.name to a served model)")
        try:
            return self.manager.status(name, version)
        except NotFound as error:
            if version is None:
                raise
            tracked = ", ".join(str(s.version) for s in reversed(self.manager.status(name)))
            raise NotFound(f"{error.message} (tracked versions of {name}: {tracked})") from None

    def reload_config(self, configs: list[ModelConfig]) -> None:
        """Replace the served model list; blocks until newly added models are available or failed."""
        self.manager.reload_config(configs, wait=True)


def _check_input_names(inputs: Mapping[str, np.ndarray], signature: Signature) -> None:
    expected, sent = set(signature.inputs), set(inputs)
    if expected == sent:
        return
    if len(sent) != len(expected):
        raise InvalidArgument(
            f"input size does not match signature: {len(sent)}!={len(expected)} "
            f"len({{{','.join(sorted(sent))}}}) != len({{{','.join(sorted(expected))}}}). "
            f"Sent extra: {{{','.join(sorted(sent - expected))}}}. "
            f"Missing but required: {{{','.join(sorted(expected - sent))}}}."
        )
    missing = sorted(expected - sent)[0]
    raise InvalidArgument(
        f"Signature input alias: {missing}(feed name: {signature.inputs[missing].name}) not found in request "
        f"and no default value provided. Inputs expected to be in the set {{{','.join(sorted(expected))}}}."
    )


def _output_keys(output_filter: Sequence[str], signature: Signature) -> list[str]:
    if not output_filter:
        return list(signature.outputs)
    seen: set[str] = set()
    for alias in output_filter:
        if alias not in signature.outputs:
            raise InvalidArgument(
                f"output tensor alias not found in signature: {alias} Outputs expected to be in the set "
                f"{{{','.join(sorted(signature.outputs))}}}."
            )
        if alias in seen:
            raise InvalidArgument(f"duplicate output tensor alias: {alias}")
        seen.add(alias)
    return list(output_filter)


def _signature_names(servable: Servable) -> str:
    # TF2 SavedModels list their init op as a signature; it is nothing a request can run.
    names = sorted(k for k in servable.signatures if not k.startswith("__"))
    return ", ".join(names) or "none"


def _text(label: object) -> str:
    return label.decode("utf-8", "replace") if isinstance(label, bytes) else str(label)
