"""TF Serving's gRPC services (``tensorflow.serving.PredictionService`` and ``ModelService``):
a thin adapter from protos to the dataplane."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import replace
from typing import Any, TypeVar

import grpc

from nbserve import tensors
from nbserve.cancellation import RunControl, run_control
from nbserve.dataplane import Dataplane, ModelSpec, Served
from nbserve.errors import Internal, InvalidArgument, ServingError
from nbserve.manager.config import model_configs_from_proto
from nbserve.protos.tensorflow.core.protobuf import error_codes_pb2
from nbserve.protos.tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    inference_pb2,
    model_management_pb2,
    model_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
    regression_pb2,
)
from nbserve.server import messages

_MAX_MESSAGE = 1024
KEY_METADATA = "x-nbserve-key"  # sticky A/B routing key
REQUEST_ID_METADATA = "x-nbserve-request-id"  # sent as initial metadata when an experiment answered
_GIVEN_UP = "Deadline Exceeded: the client's deadline passed or it cancelled the call"
Response = TypeVar("Response")


def _serving_call(method: Callable[..., Response]) -> Callable[..., Response]:
    """Map ServingErrors (and anything unexpected) to gRPC status codes, as TF Serving does."""

    @functools.wraps(method)
    def wrapper(self: Any, request: Any, context: grpc.ServicerContext) -> Response:
        control = RunControl()
        # Fires when the RPC ends; before the handler returns only if the client's deadline passed
        # (or it cancelled): the model run then stops, as TF Serving's session-run timeout does.
        context.add_callback(lambda: control.cancel(_GIVEN_UP))
        try:
            with run_control(control), _admitted(self.dataplane, request, context):
                return method(self, request, context)
        except ServingError as error:
            context.abort(grpc.StatusCode[error.code], _truncate(error.message))
        except RecursionError:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "Request is nested too deeply.")
        except Exception as error:  # a bug or a model failure must still answer with a status
            failure = Internal(f"{type(error).__name__}: {error}")
            context.abort(grpc.StatusCode.INTERNAL, _truncate(failure.message))

    return wrapper


_INFERENCE = (
    predict_pb2.PredictRequest,
    classification_pb2.ClassificationRequest,
    regression_pb2.RegressionRequest,
)


def _admitted(dataplane: Dataplane, request: Any, context: grpc.ServicerContext) -> AbstractContextManager:
    """Hold the isolation slot of the model an inference request names (nothing for other calls)."""
    if isinstance(request, _INFERENCE):
        name = request.model_spec.name
    elif isinstance(request, inference_pb2.MultiInferenceRequest) and request.tasks:
        name = request.tasks[0].model_spec.name
    else:
        return contextlib.nullcontext()
    gate = None if dataplane.isolation is None else dataplane.isolation.gate(name)
    return contextlib.nullcontext() if gate is None else gate.admit(context.time_remaining())


def _truncate(message: str) -> str:
    return message if len(message) <= _MAX_MESSAGE else message[:_MAX_MESSAGE] + "...TRUNCATED"


def model_spec(request: Any) -> ModelSpec:
    """The dataplane ModelSpec of a request's ``model_spec`` (version or version_label)."""
    if not request.HasField("model_spec"):
        raise InvalidArgument("Missing ModelSpec (set model_spec.name to the model to use)")
    spec = request.model_spec
    choice = spec.WhichOneof("version_choice")
    return ModelSpec(
        name=spec.name,
        version=spec.version.value if choice == "version" else None,
        label=spec.version_label if choice == "version_label" else None,
        signature_name=spec.signature_name,
    )


def routed_spec(request: Any, context: grpc.ServicerContext) -> ModelSpec:
    """``model_spec(request)`` with the A/B routing key from the call's metadata."""
    key = next((v for k, v in context.invocation_metadata() or () if k == KEY_METADATA), None)
    spec = model_spec(request)
    return spec if key is None else replace(spec, key=str(key))


def _send_request_id(context: grpc.ServicerContext, served: Served) -> None:
    if served.request_id is not None:
        context.send_initial_metadata(((REQUEST_ID_METADATA, served.request_id),))


def _fill_spec(target: model_pb2.ModelSpec, served: Served, with_signature: bool = True) -> None:
    target.name = served.name
    target.version.value = served.version
    if with_signature:
        target.signature_name = served.signature.name


class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
    """``tensorflow.serving.PredictionService``."""

    def __init__(self, dataplane: Dataplane) -> None:
        self.dataplane = dataplane

    @_serving_call
    def Predict(self, request: predict_pb2.PredictRequest, context: grpc.ServicerContext):  # noqa: N802
        def decode(signature):
            arrays = {
                alias: tensors.tensor_proto_to_ndarray(proto, alias)
                for alias, proto in request.inputs.items()
            }
            for alias, proto in request.inputs.items():
                _check_dtype(alias, proto.dtype, signature)
            return arrays

        result = self.dataplane.predict(routed_spec(request, context), decode, list(request.output_filter))
        _send_request_id(context, result.served)
        response = predict_pb2.PredictResponse()
        _fill_spec(response.model_spec, result.served)
        for alias, array in result.outputs.items():
            response.outputs[alias].CopyFrom(
                tensors.ndarray_to_tensor_proto(array, result.output_infos[alias].dtype)
            )
        return response

    @_serving_call
    def Classify(self, request, context):  # noqa: N802
        result = self.dataplane.classify(
            routed_spec(request, context), tensors.serialized_examples_from_input(request.input)
        )
        _send_request_id(context, result.served)
        response = classification_pb2.ClassificationResponse()
        _fill_spec(response.model_spec, result.served)
        _fill_classifications(response.result, result.classifications)
        return response

    @_serving_call
    def Regress(self, request, context):  # noqa: N802
        result = self.dataplane.regress(
            routed_spec(request, context), tensors.serialized_examples_from_input(request.input)
        )
        _send_request_id(context, result.served)
        response = regression_pb2.RegressionResponse()
        _fill_spec(response.model_spec, result.served)
        response.result.regressions.extend(regression_pb2.Regression(value=v) for v in result.values)
        return response

    @_serving_call
    def MultiInference(self, request, context):  # noqa: N802
        tasks = [(model_spec(task), task.method_name) for task in request.tasks]
        results = self.dataplane.multi_inference(tasks, tensors.serialized_examples_from_input(request.input))
        response = inference_pb2.MultiInferenceResponse()
        for result in results:
            entry = response.results.add()
            _fill_spec(entry.model_spec, result.served)
            if hasattr(result, "classifications"):
                _fill_classifications(entry.classification_result, result.classifications)
            else:
                entry.regression_result.regressions.extend(
                    regression_pb2.Regression(value=v) for v in result.values
                )
        return response

    @_serving_call
    def GetModelMetadata(self, request, context):  # noqa: N802
        if not request.metadata_field:
            raise InvalidArgument("GetModelMetadataRequest must specify at least one metadata_field")
        for field in request.metadata_field:
            if field != messages.SIGNATURE_DEF_FIELD:
                raise InvalidArgument(
                    f"Metadata field {field} is not supported. The only supported field is signature_def."
                )
        servable, signatures = self.dataplane.metadata(model_spec(request))
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        response.model_spec.name = servable.name
        response.model_spec.version.value = servable.version
        response.metadata[messages.SIGNATURE_DEF_FIELD].Pack(messages.signature_def_map(signatures))
        return response


def _check_dtype(alias: str, dtype: int, signature: Any) -> None:
    """TF's session refuses a fed tensor of another dtype than the signature's (no implicit cast)."""
    info = signature.inputs.get(alias)
    if info is None or not info.dtype or dtype == info.dtype:
        return
    expected, sent = tensors.data_type_name(info.dtype), tensors.data_type_name(dtype)
    try:
        tf_name = "string" if expected == "DT_STRING" else tensors.numpy_dtype(info.dtype).name
    except ServingError:
        tf_name = tensors.tf_type_string(info.dtype)
    raise InvalidArgument(
        f"Input '{alias}' of signature '{signature.name}' expects {expected} but the request's TensorProto "
        f"is {sent} (set its dtype to {expected}, e.g. tf.make_tensor_proto(values, dtype=tf.{tf_name}))"
    )


def _fill_classifications(target: Any, classifications: list[list[tuple[str, float]]]) -> None:
    for row in classifications:
        entry = target.classifications.add()
        entry.classes.extend(classification_pb2.Class(label=label, score=score) for label, score in row)


class ModelService(model_service_pb2_grpc.ModelServiceServicer):
    """``tensorflow.serving.ModelService``: status and config reload."""

    def __init__(self, dataplane: Dataplane) -> None:
        self.dataplane = dataplane

    @_serving_call
    def GetModelStatus(self, request, context):  # noqa: N802
        spec = model_spec(request)
        return messages.status_response(self.dataplane.status(spec.name, spec.version))

    def HandleReloadConfigRequest(self, request, context):  # noqa: N802
        response = model_management_pb2.ReloadConfigResponse()
        try:
            if request.config.WhichOneof("config") != "model_config_list":
                raise InvalidArgument(
                    "ServerModelConfig type not supported by HandleReloadConfigRequest. "
                    "Only ModelConfigList is currently supported"
                )
            self.dataplane.reload_config(model_configs_from_proto(request.config))
        except ServingError as error:
            response.status.error_code = error_codes_pb2.Code.Value(error.code)
            response.status.error_message = error.message
            context.set_code(grpc.StatusCode[error.code])
            context.set_details(_truncate(error.message))
        return response


def add_services(server: grpc.Server, dataplane: Dataplane) -> None:
    """Register PredictionService and ModelService on a grpc server."""
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(PredictionService(dataplane), server)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelService(dataplane), server)
