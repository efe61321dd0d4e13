"""An outside client written only with tensorflow-serving-api's official stubs (run as a separate
process by the tests). Prints one JSON document with what the server answered."""

from __future__ import annotations

import argparse
import json
import sys

import grpc
import tensorflow as tf
from google.protobuf import json_format
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--server", required=True)
    parser.add_argument("--image", action="append", default=[], help="image file for predict_images")
    args = parser.parse_args(argv)
    channel = grpc.insecure_channel(args.server)
    prediction = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    model_service = model_service_pb2_grpc.ModelServiceStub(channel)

    request = predict_pb2.PredictRequest()
    request.model_spec.name = "half_plus_two"
    request.model_spec.version_label = "stable"
    request.inputs["x"].CopyFrom(tf.make_tensor_proto([[1.0], [2.0], [5.0]], dtype=tf.float32))
    predicted = prediction.Predict(request, timeout=30)

    images = [open(path, "rb").read() for path in args.image]
    image_request = predict_pb2.PredictRequest()
    image_request.model_spec.name = "digits"
    image_request.model_spec.signature_name = "predict_images"
    image_request.inputs["images"].CopyFrom(tf.make_tensor_proto(images, dtype=tf.string))
    image_scores = prediction.Predict(image_request, timeout=30)

    metadata_request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    metadata_request.model_spec.name = "half_plus_two"
    metadata = prediction.GetModelMetadata(metadata_request, timeout=30)
    signature_map = get_model_metadata_pb2.SignatureDefMap()
    metadata.metadata["signature_def"].Unpack(signature_map)

    status_request = get_model_status_pb2.GetModelStatusRequest()
    status_request.model_spec.name = "half_plus_two"
    status = model_service.GetModelStatus(status_request, timeout=30)

    json.dump(
        {
            "predict": {
                "y": tf.make_ndarray(predicted.outputs["y"]).tolist(),
                "model_spec": json_format.MessageToDict(predicted.model_spec),
            },
            "image_scores": tf.make_ndarray(image_scores.outputs["scores"]).tolist(),
            "metadata": {
                "model_spec": json_format.MessageToDict(metadata.model_spec),
                "type_url": metadata.metadata["signature_def"].type_url,
                "signature_def": {
                    name: sig.SerializeToString().hex() for name, sig in signature_map.signature_def.items()
                },
            },
            "status": json_format.MessageToDict(status, preserving_proto_field_name=True),
        },
        sys.stdout,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
