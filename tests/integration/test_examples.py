"""The examples/ clients, run as a user runs them (separate processes), against a real nbserve server."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from nbserve import demo

EXAMPLES = os.path.join(os.path.dirname(__file__), "..", "..", "examples")
LINE = re.compile(r"^(digit_\d+_label_(\d)\.jpg): class (\d) \(score ([0-9.]+)\)", re.MULTILINE)


@pytest.fixture(scope="module")
def image_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("images")
    demo.write_digit_images(directory, 12, fmt="jpeg")
    return directory


@pytest.mark.parametrize("client", ["rest_client.py", "grpc_client.py"])
@pytest.mark.parametrize("mode", ["--batch_mode", "--no-batch_mode"])
def test_example_client_predicts_like_the_model(server, models, image_dir, client, mode):
    address = server.rest_url.removeprefix("http://") if client == "rest_client.py" else server.grpc_address
    run = subprocess.run(
        [
            sys.executable,
            os.path.join(EXAMPLES, client),
            f"--server={address}",
            f"--image_path={image_dir}",
            mode,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    lines = LINE.findall(run.stdout)
    assert len(lines) == 12
    loaded = tf.saved_model.load(os.path.join(models.digits, "1"))
    images = [open(os.path.join(image_dir, name), "rb").read() for name, *_ in lines]
    expected = loaded.signatures["predict_images"](images=tf.constant(images))["scores"].numpy()
    assert [int(predicted) for _, _, predicted, _ in lines] == expected.argmax(axis=1).tolist()
    np.testing.assert_allclose([float(s) for *_, s in lines], expected.max(axis=1), atol=1e-4)
    requests_sent = 1 if mode == "--batch_mode" else 12
    assert f"in {requests_sent} request(s)" in run.stdout
    assert "ms per image" in run.stdout


def test_example_client_reports_server_errors(server, image_dir):
    address = server.rest_url.removeprefix("http://")
    run = subprocess.run(
        [
            sys.executable,
            os.path.join(EXAMPLES, "rest_client.py"),
            f"--server={address}",
            f"--image_path={image_dir}",
            "--model_name=missing",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 1
    assert "404" in run.stdout + run.stderr and "Latest(missing)" in run.stdout + run.stderr
