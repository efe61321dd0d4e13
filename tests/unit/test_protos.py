"""nbserve's generated protos against the official tensorflow / tensorflow-serving-api ones.

Real behaviour only: wire round trips both ways, text-format configs, field-by-field
descriptor comparison, coexistence in one process, and regeneration determinism.
"""

from __future__ import annotations

import filecmp
import importlib
import importlib.metadata
import os
import subprocess
import sys
from concurrent import futures
from pathlib import Path

import grpc
import numpy as np
import pytest
import tensorflow as tf
from google.protobuf import descriptor_pb2, descriptor_pool, json_format, text_format
from tensorflow.core.example import example_pb2 as tf_example_pb2
from tensorflow.core.protobuf import meta_graph_pb2 as tf_meta_graph_pb2
from tensorflow_serving.apis import classification_pb2 as o_classification_pb2
from tensorflow_serving.apis import get_model_metadata_pb2 as o_get_model_metadata_pb2
from tensorflow_serving.apis import get_model_status_pb2 as o_get_model_status_pb2
from tensorflow_serving.apis import model_service_pb2_grpc as o_model_service_pb2_grpc
from tensorflow_serving.apis import predict_pb2 as o_predict_pb2
from tensorflow_serving.apis import prediction_log_pb2 as o_prediction_log_pb2
from tensorflow_serving.apis import prediction_service_pb2_grpc as o_prediction_service_pb2_grpc
from tensorflow_serving.apis import session_service_pb2 as o_session_service_pb2
from tensorflow_serving.config import model_server_config_pb2 as o_model_server_config_pb2

from nbserve.protos._pool import POOL
from nbserve.protos.tensorflow.core.framework import types_pb2
from nbserve.protos.tensorflow.core.protobuf import meta_graph_pb2
from nbserve.protos.tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_log_pb2,
    prediction_service_pb2_grpc,
)
from nbserve.protos.tensorflow_serving.config import model_server_config_pb2, monitoring_config_pb2
from nbserve.protos.tensorflow_serving.servables.tensorflow import session_bundle_config_pb2

REPO = Path(__file__).resolve().parents[2]
GENERATED = REPO / "nbserve" / "protos"
OUR_MODULES = sorted(
    "nbserve.protos." + p.relative_to(GENERATED).with_suffix("").as_posix().replace("/", ".")
    for p in GENERATED.rglob("*_pb2*.py")
)
OFFICIAL_MODULES = [
    *(
        f"tensorflow_serving.apis.{m}"
        for m in (
            "classification_pb2",
            "get_model_metadata_pb2",
            "get_model_status_pb2",
            "inference_pb2",
            "input_pb2",
            "logging_pb2",
            "model_management_pb2",
            "model_pb2",
            "model_service_pb2",
            "model_service_pb2_grpc",
            "predict_pb2",
            "prediction_log_pb2",
            "prediction_service_pb2",
            "prediction_service_pb2_grpc",
            "regression_pb2",
            "status_pb2",
        )
    ),
    *(
        f"tensorflow_serving.config.{m}"
        for m in (
            "file_system_storage_path_source_pb2",
            "log_collector_config_pb2",
            "logging_config_pb2",
            "model_server_config_pb2",
            "platform_config_pb2",
        )
    ),
    "tensorflow.core.framework.tensor_pb2",
    "tensorflow.core.example.example_pb2",
    "tensorflow.core.protobuf.meta_graph_pb2",
    "tensorflow.core.protobuf.error_codes_pb2",
]
# Messages deliberately trimmed in nbserve: official field numbers left out (kept as unknown fields).
TRIMMED = {
    "tensorflow.TensorInfo.CompositeTensor": {1},  # type_spec (tensorflow.TypeSpecProto)
    "tensorflow.serving.SessionRunLog": {1, 2},  # SessionService is not implemented
}
# Messages the installed tensorflow-serving-api does not ship (checked against the spec instead).
NOT_IN_OFFICIAL = {
    "tensorflow.serving.PrometheusConfig",
    "tensorflow.serving.MonitoringConfig",
    "tensorflow.serving.SSLConfig",
    "tensorflow.serving.BatchingParameters",
    "tensorflow.serving.ModelWarmupOptions",
}


def _same(ours, official) -> None:
    """Assert two messages (different classes) carry the same data."""
    assert ours.DESCRIPTOR.full_name == official.DESCRIPTOR.full_name
    assert ours.SerializeToString(deterministic=True) == official.SerializeToString(deterministic=True)
    assert text_format.MessageToString(ours) == text_format.MessageToString(official)


def _run(code: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True)


# --- coexistence ----------------------------------------------------------------------------------


@pytest.mark.parametrize("ours_first", [True, False], ids=["nbserve-first", "official-first"])
def test_import_with_official_modules_in_one_process(ours_first: bool) -> None:
    ours = f"for m in {OUR_MODULES!r}: importlib.import_module(m)\n"
    official = f"import tensorflow\nfor m in {OFFICIAL_MODULES!r}: importlib.import_module(m)\n"
    check = (
        "from google.protobuf import descriptor_pool\n"
        "from nbserve.protos._pool import POOL\n"
        "from nbserve.protos.tensorflow_serving.apis import predict_pb2\n"
        "from tensorflow_serving.apis import predict_pb2 as o\n"
        "assert predict_pb2.PredictRequest.DESCRIPTOR.file.pool is POOL\n"
        "assert descriptor_pool.Default().FindMessageTypeByName('tensorflow.serving.PredictRequest')"
        " is o.PredictRequest.DESCRIPTOR\n"
        "assert POOL.FindMessageTypeByName('tensorflow.TensorProto') is not"
        " descriptor_pool.Default().FindMessageTypeByName('tensorflow.TensorProto')\n"
        "print('OK')\n"
    )
    body = "import importlib\n" + (ours + official if ours_first else official + ours) + check
    proc = _run(body)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().endswith("OK")


def test_our_descriptors_are_not_in_the_default_pool() -> None:
    assert predict_pb2.DESCRIPTOR.pool is POOL
    official = descriptor_pool.Default().FindFileByName("tensorflow_serving/apis/predict.proto")
    assert official is o_predict_pb2.DESCRIPTOR
    assert predict_pb2.PredictRequest.__module__ == "nbserve.protos.tensorflow_serving.apis.predict_pb2"


# --- wire round trips -----------------------------------------------------------------------------


def test_tf_messages_convert_through_bytes_not_copyfrom() -> None:
    tensor = tf.make_tensor_proto(np.array([1, 2], np.int32))
    request = predict_pb2.PredictRequest()
    with pytest.raises(TypeError):
        request.inputs["x"].CopyFrom(tensor)  # different class (other descriptor pool)
    request.inputs["x"].ParseFromString(tensor.SerializeToString())
    assert request.inputs["x"].SerializeToString() == tensor.SerializeToString()
    assert tf.make_ndarray(type(tensor).FromString(request.inputs["x"].SerializeToString())).tolist() == [
        1,
        2,
    ]


def test_predict_request_official_to_ours_and_back() -> None:
    official = o_predict_pb2.PredictRequest()
    official.model_spec.name = "half_plus_two"
    official.model_spec.version.value = 123
    official.model_spec.signature_name = "serving_default"
    official.inputs["x"].CopyFrom(tf.make_tensor_proto(np.array([[1.0, 2.0], [3.0, 5.0]], np.float32)))
    official.inputs["s"].CopyFrom(tf.make_tensor_proto([b"a", b"bc"]))
    official.output_filter.append("y")

    ours = predict_pb2.PredictRequest.FromString(official.SerializeToString())
    _same(ours, official)
    assert ours.model_spec.WhichOneof("version_choice") == "version"
    assert ours.model_spec.version.value == 123
    x = ours.inputs["x"]
    assert x.dtype == types_pb2.DT_FLOAT
    assert [d.size for d in x.tensor_shape.dim] == [2, 2]
    assert np.frombuffer(x.tensor_content, np.float32).tolist() == [1.0, 2.0, 3.0, 5.0]
    assert list(ours.inputs["s"].string_val) == [b"a", b"bc"]
    assert list(ours.output_filter) == ["y"]


def test_predict_request_and_response_ours_to_official() -> None:
    ours = predict_pb2.PredictRequest()
    ours.model_spec.name = "m"
    ours.model_spec.version_label = "stable"
    t = ours.inputs["x"]
    t.dtype = types_pb2.DT_INT64
    t.tensor_shape.dim.add().size = 3
    t.int64_val.extend([1, -2, 3])
    ours.client_id = b"abc"

    official = o_predict_pb2.PredictRequest.FromString(ours.SerializeToString())
    _same(ours, official)
    assert official.model_spec.version_label == "stable"
    assert tf.make_ndarray(official.inputs["x"]).tolist() == [1, -2, 3]
    assert official.HasField("client_id") and official.client_id == b"abc"

    response = predict_pb2.PredictResponse()
    response.model_spec.name = "m"
    response.model_spec.version.value = 2
    response.outputs["y"].dtype = types_pb2.DT_DOUBLE
    response.outputs["y"].tensor_shape.dim.add().size = 2
    response.outputs["y"].double_val.extend([0.5, 1.5])
    official_response = o_predict_pb2.PredictResponse.FromString(response.SerializeToString())
    _same(response, official_response)
    assert tf.make_ndarray(official_response.outputs["y"]).tolist() == [0.5, 1.5]


def _our_signature_def_map() -> get_model_metadata_pb2.SignatureDefMap:
    sig_map = get_model_metadata_pb2.SignatureDefMap()
    sig = sig_map.signature_def["serving_default"]
    sig.method_name = "tensorflow/serving/predict"
    x = sig.inputs["x"]
    x.name = "serving_default_x:0"
    x.dtype = types_pb2.DT_FLOAT
    x.tensor_shape.dim.add().size = -1
    x.tensor_shape.dim.add().size = 1
    sparse = sig.inputs["sp"]
    sparse.coo_sparse.values_tensor_name = "v:0"
    sparse.coo_sparse.indices_tensor_name = "i:0"
    sparse.coo_sparse.dense_shape_tensor_name = "s:0"
    sparse.dtype = types_pb2.DT_INT64
    y = sig.outputs["y"]
    y.name = "StatefulPartitionedCall:0"
    y.dtype = types_pb2.DT_FLOAT
    y.tensor_shape.unknown_rank = True
    sig.defaults["x"].dtype = types_pb2.DT_FLOAT
    sig.defaults["x"].float_val.append(0.0)
    return sig_map


def test_get_model_metadata_response_with_any_both_ways() -> None:
    response = get_model_metadata_pb2.GetModelMetadataResponse()
    response.model_spec.name = "m"
    response.model_spec.version.value = 1
    sig_map = _our_signature_def_map()
    response.metadata["signature_def"].Pack(sig_map)
    packed = response.metadata["signature_def"]
    assert packed.type_url == "type.googleapis.com/tensorflow.serving.SignatureDefMap"
    assert packed.Is(get_model_metadata_pb2.SignatureDefMap.DESCRIPTOR)

    official = o_get_model_metadata_pb2.GetModelMetadataResponse.FromString(response.SerializeToString())
    assert official.model_spec.version.value == 1
    official_map = o_get_model_metadata_pb2.SignatureDefMap()
    assert official.metadata["signature_def"].Unpack(official_map)
    _same(sig_map, official_map)
    assert official_map.signature_def["serving_default"].inputs["sp"].coo_sparse.indices_tensor_name == "i:0"

    # The reverse: an official response unpacked by ours.
    back = get_model_metadata_pb2.GetModelMetadataResponse.FromString(official.SerializeToString())
    unpacked = get_model_metadata_pb2.SignatureDefMap()
    assert back.metadata["signature_def"].Unpack(unpacked)
    assert unpacked == sig_map
    assert unpacked.signature_def["serving_default"].defaults["x"].float_val == [0.0]

    # JSON (REST metadata) resolves the Any through our private pool.
    ours_json = json_format.MessageToDict(response, descriptor_pool=POOL)
    assert ours_json == json_format.MessageToDict(official)
    assert ours_json["metadata"]["signature_def"]["@type"] == packed.type_url


def test_composite_tensor_type_spec_survives_a_round_trip() -> None:
    official = tf_meta_graph_pb2.TensorInfo()
    official.composite_tensor.type_spec.type_spec_class_name = "RaggedTensorSpec"
    official.composite_tensor.type_spec.num_flat_components = 2
    official.composite_tensor.components.add().name = "values:0"
    ours = meta_graph_pb2.TensorInfo.FromString(official.SerializeToString())
    assert ours.WhichOneof("encoding") == "composite_tensor"
    assert ours.composite_tensor.components[0].name == "values:0"
    # type_spec is not modelled by nbserve but is kept as an unknown field.
    assert tf_meta_graph_pb2.TensorInfo.FromString(ours.SerializeToString()) == official


def test_get_model_status_response_both_ways() -> None:
    ours = get_model_status_pb2.GetModelStatusResponse()
    ok = ours.model_version_status.add()
    ok.version = 2
    ok.state = get_model_status_pb2.ModelVersionStatus.AVAILABLE
    failed = ours.model_version_status.add()
    failed.version = 1
    failed.state = get_model_status_pb2.ModelVersionStatus.END
    failed.status.error_code = 3  # INVALID_ARGUMENT
    failed.status.error_message = "bad model"

    official = o_get_model_status_pb2.GetModelStatusResponse.FromString(ours.SerializeToString())
    _same(ours, official)
    assert official.model_version_status[0].state == o_get_model_status_pb2.ModelVersionStatus.AVAILABLE
    back = get_model_status_pb2.GetModelStatusResponse.FromString(official.SerializeToString())
    assert back == ours
    # json_name overrides (model_version_status, error_code, error_message) match TF Serving's REST output.
    as_json = json_format.MessageToDict(ours)
    assert as_json == json_format.MessageToDict(official)
    assert as_json["model_version_status"][1]["status"] == {
        "error_code": "INVALID_ARGUMENT",
        "error_message": "bad model",
    }


def test_classification_request_with_tf_examples_both_ways() -> None:
    example = tf.train.Example(
        features=tf.train.Features(
            feature={
                "x": tf.train.Feature(float_list=tf.train.FloatList(value=[1.5, 2.5])),
                "id": tf.train.Feature(int64_list=tf.train.Int64List(value=[7])),
                "tag": tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"t"])),
            }
        )
    )
    assert isinstance(example, tf_example_pb2.Example)
    official = o_classification_pb2.ClassificationRequest()
    official.model_spec.name = "m"
    official.model_spec.signature_name = "classify_x"
    official.input.example_list.examples.extend([example, example])

    ours = classification_pb2.ClassificationRequest.FromString(official.SerializeToString())
    _same(ours, official)
    assert ours.input.WhichOneof("kind") == "example_list"
    features = ours.input.example_list.examples[1].features.feature
    assert list(features["x"].float_list.value) == [1.5, 2.5]
    assert list(features["id"].int64_list.value) == [7]
    assert list(features["tag"].bytes_list.value) == [b"t"]

    with_context = classification_pb2.ClassificationRequest()
    with_context.model_spec.name = "m"
    with_context.input.example_list_with_context.context.ParseFromString(example.SerializeToString())
    item = with_context.input.example_list_with_context.examples.add()
    item.features.feature["z"].float_list.value.append(1)
    back = o_classification_pb2.ClassificationRequest.FromString(with_context.SerializeToString())
    _same(with_context, back)
    assert back.input.example_list_with_context.context == example

    response = classification_pb2.ClassificationResponse()
    response.model_spec.name = "m"
    cls = response.result.classifications.add().classes.add()
    cls.label, cls.score = "cat", 0.75
    _same(response, o_classification_pb2.ClassificationResponse.FromString(response.SerializeToString()))


def test_warmup_prediction_logs() -> None:
    record = o_prediction_log_pb2.PredictionLog()
    record.predict_log.request.model_spec.name = "m"
    record.predict_log.request.inputs["x"].CopyFrom(tf.make_tensor_proto([1.0]))
    record.log_metadata.model_spec.name = "m"
    ours = prediction_log_pb2.PredictionLog.FromString(record.SerializeToString())
    assert ours.WhichOneof("log_type") == "predict_log"
    _same(ours, record)

    session_run = o_prediction_log_pb2.PredictionLog(
        session_run_log=o_prediction_log_pb2.SessionRunLog(
            request=o_session_service_pb2.SessionRunRequest(fetch=["y:0"])
        )
    )
    ours = prediction_log_pb2.PredictionLog.FromString(session_run.SerializeToString())
    assert ours.WhichOneof("log_type") == "session_run_log"  # detectable, so it can be refused
    assert ours.SerializeToString() == session_run.SerializeToString()


# --- text-format configs --------------------------------------------------------------------------

MODEL_SERVER_CONFIG = """
model_config_list {
  config { name: "m" base_path: "/models/m" model_platform: "tensorflow"
           model_version_policy { specific { versions: 42 versions: 43 } }
           version_labels { key: "stable" value: 42 } version_labels { key: "canary" value: 43 } }
  config { name: "latest2" base_path: "/models/l" model_platform: "tensorflow"
           model_version_policy { latest { num_versions: 2 } } }
  config { name: "every" base_path: "/models/e" model_platform: "tensorflow"
           model_version_policy { all {} } }
}
"""


def test_model_server_config_text_format() -> None:
    config = text_format.Parse(MODEL_SERVER_CONFIG, model_server_config_pb2.ModelServerConfig())
    assert config.WhichOneof("config") == "model_config_list"
    m, latest, every = config.model_config_list.config
    assert (m.name, m.base_path, m.model_platform) == ("m", "/models/m", "tensorflow")
    assert m.model_version_policy.WhichOneof("policy_choice") == "specific"
    assert list(m.model_version_policy.specific.versions) == [42, 43]
    assert dict(m.version_labels) == {"stable": 42, "canary": 43}
    assert latest.model_version_policy.WhichOneof("policy_choice") == "latest"
    assert latest.model_version_policy.latest.num_versions == 2
    assert every.model_version_policy.WhichOneof("policy_choice") == "all"
    assert not every.version_labels

    official = text_format.Parse(MODEL_SERVER_CONFIG, o_model_server_config_pb2.ModelServerConfig())
    _same(config, official)


def test_batching_and_monitoring_config_text_format() -> None:
    params = text_format.Parse(
        "max_batch_size { value: 128 } batch_timeout_micros { value: 0 }\n"
        "max_enqueued_batches { value: 1000000 } num_batch_threads { value: 8 }\n"
        'thread_pool_name { value: "pool" } allowed_batch_sizes: 64 allowed_batch_sizes: 128\n'
        "pad_variable_length_inputs: true enable_large_batch_splitting { value: true }\n"
        "max_execution_batch_size { value: 64 }",
        session_bundle_config_pb2.BatchingParameters(),
    )
    assert params.max_batch_size.value == 128
    assert params.HasField("batch_timeout_micros") and params.batch_timeout_micros.value == 0
    assert params.max_enqueued_batches.value == 1_000_000
    assert params.num_batch_threads.value == 8
    assert params.thread_pool_name.value == "pool"
    assert list(params.allowed_batch_sizes) == [64, 128]
    assert params.pad_variable_length_inputs and params.enable_large_batch_splitting.value
    assert params.max_execution_batch_size.value == 64
    assert not session_bundle_config_pb2.BatchingParameters().HasField("max_batch_size")
    numbers = {f.name: f.number for f in session_bundle_config_pb2.BatchingParameters.DESCRIPTOR.fields}
    assert numbers == {
        "max_batch_size": 1,
        "batch_timeout_micros": 2,
        "max_enqueued_batches": 3,
        "num_batch_threads": 4,
        "thread_pool_name": 5,
        "allowed_batch_sizes": 6,
        "pad_variable_length_inputs": 7,
        "enable_large_batch_splitting": 8,
        "max_execution_batch_size": 9,
    }

    warmup = text_format.Parse(
        "num_request_iterations { value: 3 }", session_bundle_config_pb2.ModelWarmupOptions()
    )
    assert warmup.num_request_iterations.value == 3

    monitoring = text_format.Parse(
        'prometheus_config { enable: true path: "/monitoring/prometheus/metrics" }',
        monitoring_config_pb2.MonitoringConfig(),
    )
    assert monitoring.prometheus_config.enable
    assert monitoring.prometheus_config.path == "/monitoring/prometheus/metrics"


# --- descriptors ----------------------------------------------------------------------------------


def _all_messages(file_descriptor):
    stack = list(file_descriptor.message_types_by_name.values())
    while stack:
        message = stack.pop()
        yield message
        stack.extend(message.nested_types)


def _all_enums(file_descriptor):
    yield from file_descriptor.enum_types_by_name.values()
    for message in _all_messages(file_descriptor):
        yield from message.enum_types


def _field_protos(message) -> dict[int, descriptor_pb2.FieldDescriptorProto]:
    proto = descriptor_pb2.DescriptorProto()
    message.CopyToProto(proto)
    fields = {}
    for field in proto.field:
        if field.HasField("oneof_index"):  # compare oneofs by name, not position
            field.oneof_index = 0
        fields[field.number] = field
    return fields


def _our_files():
    for module in OUR_MODULES:
        if module.endswith("_pb2"):
            yield importlib.import_module(module).DESCRIPTOR


def test_every_message_matches_the_official_descriptor() -> None:
    for module in OFFICIAL_MODULES:
        importlib.import_module(module)
    default = descriptor_pool.Default()
    compared, missing = set(), set()
    for file_descriptor in _our_files():
        for ours in _all_messages(file_descriptor):
            try:
                official = default.FindMessageTypeByName(ours.full_name)
            except KeyError:
                missing.add(ours.full_name)
                continue
            compared.add(ours.full_name)
            assert ours.GetOptions().map_entry == official.GetOptions().map_entry, ours.full_name
            ours_fields, official_fields = _field_protos(ours), _field_protos(official)
            left_out = set(official_fields) - set(ours_fields)
            assert left_out == TRIMMED.get(ours.full_name, set()), ours.full_name
            assert set(ours_fields) <= set(official_fields), ours.full_name
            for number, field in ours_fields.items():
                assert field == official_fields[number], f"{ours.full_name} field {number}"
                oneof_ours = ours.fields_by_number[number].containing_oneof
                oneof_official = official.fields_by_number[number].containing_oneof
                assert (oneof_ours and oneof_ours.name) == (oneof_official and oneof_official.name)
            if ours.full_name not in TRIMMED:
                assert {n.name for n in ours.nested_types} == {n.name for n in official.nested_types}
                assert {e.name for e in ours.enum_types} == {e.name for e in official.enum_types}
        for ours_enum in _all_enums(file_descriptor):
            official_enum = default.FindEnumTypeByName(ours_enum.full_name)
            assert [(v.name, v.number) for v in ours_enum.values] == [
                (v.name, v.number) for v in official_enum.values
            ], ours_enum.full_name
    assert missing == NOT_IN_OFFICIAL
    assert {
        "tensorflow.serving.PredictRequest",
        "tensorflow.TensorProto",
        "tensorflow.SignatureDef",
        "tensorflow.serving.ModelServerConfig",
        "tensorflow.Example",
    } <= compared


def test_services_match_the_official_ones() -> None:
    for name in ("tensorflow.serving.PredictionService", "tensorflow.serving.ModelService"):
        ours = POOL.FindServiceByName(name)
        official = descriptor_pool.Default().FindServiceByName(name)
        assert [(m.name, m.input_type.full_name, m.output_type.full_name) for m in ours.methods] == [
            (m.name, m.input_type.full_name, m.output_type.full_name) for m in official.methods
        ]


def test_official_stubs_talk_to_our_servicers() -> None:
    class Prediction(prediction_service_pb2_grpc.PredictionServiceServicer):
        def Predict(self, request, context):  # noqa: N802 - gRPC method name
            response = predict_pb2.PredictResponse()
            response.model_spec.CopyFrom(request.model_spec)
            response.outputs["y"].CopyFrom(request.inputs["x"])
            return response

    class Models(model_service_pb2_grpc.ModelServiceServicer):
        def GetModelStatus(self, request, context):  # noqa: N802 - gRPC method name
            response = get_model_status_pb2.GetModelStatusResponse()
            status = response.model_version_status.add(version=1)
            status.state = get_model_status_pb2.ModelVersionStatus.AVAILABLE
            return response

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(Prediction(), server)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(Models(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            request = o_predict_pb2.PredictRequest()
            request.model_spec.name = "m"
            request.inputs["x"].CopyFrom(tf.make_tensor_proto([1.0, 2.0]))
            reply = o_prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request, timeout=10)
            assert tf.make_ndarray(reply.outputs["y"]).tolist() == [1.0, 2.0]
            status = o_model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(
                o_get_model_status_pb2.GetModelStatusRequest(), timeout=10
            )
            assert status.model_version_status[0].state == o_get_model_status_pb2.ModelVersionStatus.AVAILABLE
            with pytest.raises(grpc.RpcError) as err:  # not overridden -> generated UNIMPLEMENTED
                o_prediction_service_pb2_grpc.PredictionServiceStub(channel).Classify(
                    o_classification_pb2.ClassificationRequest(), timeout=10
                )
            assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED
    finally:
        server.stop(None)


# --- generation -----------------------------------------------------------------------------------


def _tree(root: Path) -> dict[str, Path]:
    return {
        p.relative_to(root).as_posix(): p
        for p in root.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }


def test_generate_is_deterministic_and_matches_committed_files(tmp_path: Path) -> None:
    pytest.importorskip("grpc_tools")
    import nbserve.protos

    installed = importlib.metadata.version("grpcio-tools")
    if installed != nbserve.protos.GENERATED_WITH_GRPCIO_TOOLS:
        pytest.skip(f"committed files come from grpcio-tools {nbserve.protos.GENERATED_WITH_GRPCIO_TOOLS}")
    out = tmp_path / "protos"
    for attempt in range(2):  # the second run over the same dir must change nothing
        before = {rel: p.stat().st_mtime_ns for rel, p in _tree(out).items()} if attempt else {}
        proc = subprocess.run(
            [sys.executable, str(REPO / "protos" / "generate.py"), "--out", str(out)],
            cwd=tmp_path,
            capture_output=True,
            text=True,
        )
        assert proc.returncode == 0, proc.stderr
        if attempt:
            assert {rel: p.stat().st_mtime_ns for rel, p in _tree(out).items()} == before
    generated, committed = _tree(out), _tree(GENERATED)
    assert sorted(generated) == sorted(committed)
    stale = [rel for rel in generated if not filecmp.cmp(generated[rel], committed[rel], shallow=False)]
    assert not stale, f"nbserve/protos is out of date ({stale}); run: python protos/generate.py"
