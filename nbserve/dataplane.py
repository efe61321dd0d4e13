"""The transport-neutral dataplane: every Predict / Classify / Regress / metadata / status call,
whichever door (REST, gRPC, Python) it comes in by, is answered here.

Transports decode their wire format into numpy through a callback that receives the resolved
signature (the input dtypes live there), so a request is always decoded against the version that
actually serves it, even while versions swap underneath.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from nbserve.errors import FailedPrecondition, InvalidArgument, Unimplemented
from nbserve.manager.config import ModelConfig
from nbserve.manager.manager import Manager, VersionStatus
from nbserve.servables.base import Servable
from nbserve.signature import (
    CLASSIFY_METHOD,
    DEFAULT_SERVING_SIGNATURE,
    REGRESS_METHOD,
    Signature,
    TensorInfo,
)

DT_STRING = 7


@dataclass(frozen=True)
class ModelSpec:
    """Which servable a request asks for: a model name plus at most one of version or label."""

    name: str
    version: int | None = None
    label: str | None = None
    signature_name: str = ""


@dataclass(frozen=True)
class Served:
    """The servable version and signature that answered a request."""

    name: str
    version: int
    signature: Signature


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


class Dataplane:
    """Answers inference, metadata, status and config-reload requests against a Manager."""

    def __init__(self, manager: Manager) -> None:
        self.manager = manager

    # -- resolution ---------------------------------------------------------------------------------

    def servable(self, spec: ModelSpec) -> Servable:
        """The servable a spec names (highest AVAILABLE version when neither version nor label)."""
        if not spec.name:
            raise InvalidArgument("ModelSpec has no name specified.")
        return self.manager.servable(spec.name, version=spec.version, label=spec.label)

    @staticmethod
    def _signature(servable: Servable, signature_name: str) -> Signature:
        key = signature_name or DEFAULT_SERVING_SIGNATURE
        signature = servable.signatures.get(key)
        if signature is None:
            known = ", ".join(sorted(servable.signatures)) or "none"
            raise FailedPrecondition(
                f'Serving signature key "{key}" not found. '
                f"Model {servable.name} version {servable.version} has signatures: {known}."
            )
        return signature

    # -- inference ----------------------------------------------------------------------------------

    def predict(
        self, spec: ModelSpec, decode_inputs: InputDecoder, output_filter: Sequence[str] = ()
    ) -> PredictResult:
        """Run a Predict request. ``decode_inputs`` turns the wire inputs into numpy for the signature."""
        servable = self.servable(spec)
        signature = self._signature(servable, spec.signature_name)
        if not signature.inputs:
            raise InvalidArgument(f"Failed to get input map for signature: {signature.name}")
        inputs = dict(decode_inputs(signature))
        _check_input_names(inputs, signature)
        output_keys = _output_keys(output_filter, signature)
        outputs = servable.run(signature, inputs, output_keys)
        served = Served(servable.name, servable.version, signature)
        return PredictResult(served, outputs, {k: signature.outputs[k] for k in output_keys})

    def classify(self, spec: ModelSpec, examples: Sequence[bytes]) -> ClassifyResult:
        """Classify serialized tf.Examples with a classification signature."""
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
            known = ", ".join(sorted(servable.signatures)) or "none"
            raise InvalidArgument(f"No signature was found with the name: {key}. Known signatures: {known}.")
        info = signature.inputs.get("inputs")
        if len(signature.inputs) != 1 or info is None or info.dtype != DT_STRING:
            raise InvalidArgument(
                f"Signature {key} cannot {api} tf.Examples: it needs exactly one DT_STRING input named "
                f"'inputs' (serialized tf.Example), it has {sorted(signature.inputs)}."
            )
        return servable, signature

    @staticmethod
    def _run_examples(
        servable: Servable, signature: Signature, examples: Sequence[bytes], keys: list[str]
    ) -> dict[str, np.ndarray]:
        if not examples:
            raise InvalidArgument("Input is empty.")
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
            raise InvalidArgument("ModelSpec has no name specified.")
        return self.manager.status(name, version)

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


def _text(label: object) -> str:
    return label.decode("utf-8", "replace") if isinstance(label, bytes) else str(label)
