"""The export widget through its Python model: set the controls, click Export, check the files
written, the server's state and what the widget shows."""

from __future__ import annotations

import os
from collections.abc import Iterator

import keras
import numpy as np
import pytest
import tensorflow as tf

from nbserve import Server
from nbserve.notebook.widgets.export import ExportWidget, find_models


@pytest.fixture(scope="module")
def tiny_model() -> keras.Model:
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(2)])
    model(np.zeros((1, 8, 8, 1), np.float32))
    return model


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    with Server(port=0, rest_api_port=0, file_system_poll_wait_seconds=0.2) as running:
        yield running


def test_finds_models_in_the_namespace(tiny_model: keras.Model) -> None:
    function = tf.function(lambda x: x, input_signature=[tf.TensorSpec([None], tf.float32)])
    module = tf.Module()
    namespace = {"model": tiny_model, "_hidden": tiny_model, "number": 3, "fn": function, "mod": module}
    assert find_models(namespace) == ["fn", "mod", "model"]
    namespace = {"model": tiny_model, "_hidden": tiny_model, "number": 3, "array": np.zeros(3)}
    widget = ExportWidget(namespace)
    assert widget.model.options == ("model",)
    namespace["second"] = tiny_model
    widget.refresh_button.click()
    assert widget.model.options == ("model", "second") and widget.model.value == "model"


def test_export_click_writes_a_version_and_the_server_loads_it(tiny_model, server, tmp_path) -> None:
    widget = ExportWidget({"clf": tiny_model}, server=server)
    assert widget.name.value == "clf"
    widget.name.value = "widget_model"
    widget.base_path.value = str(tmp_path / "widget_model")
    assert widget.version.value == 1
    widget.export_button.click()
    result = widget.wait(timeout=120)

    assert widget.error is None
    assert os.path.isfile(tmp_path / "widget_model" / "1" / "saved_model.pb")
    assert result.version == 1
    assert widget.progress.value == widget.progress.max and widget.progress.bar_style == "success"
    assert "AVAILABLE" in widget.status.value
    states = {v.version: v.state for m in server.models() if m.name == "widget_model" for v in m.versions}
    assert getattr(states[1], "name", states[1]) == "AVAILABLE"
    html = "".join(o["data"].get("text/html", "") for o in widget.output.outputs)
    assert "serving_default" in html and "widget_model" in html
    assert widget.version.value == 2  # the next free version


def test_export_failure_shows_one_line(tiny_model, server, tmp_path) -> None:
    widget = ExportWidget({"clf": tiny_model}, server=server)
    widget.base_path.value = str(tmp_path / "clf")
    os.makedirs(tmp_path / "clf" / "1")
    widget.version.value = 1  # taken
    widget.export_button.click()
    widget.wait(timeout=60)
    assert widget.result is None and widget.error and "\n" not in widget.error
    assert widget.progress.bar_style == "danger" and widget.error in widget.status.value.replace(
        "&#x27;", "'"
    )


def test_image_bytes_export_with_preprocessing(tiny_model, server, tmp_path) -> None:
    widget = ExportWidget({"clf": tiny_model}, server=server)
    assert widget.preprocessing.layout.display == "none"
    widget.signatures.value = "both"
    assert widget.preprocessing.layout.display is None
    widget.name.value = "images_model"
    widget.base_path.value = str(tmp_path / "images_model")
    widget.image_height.value = widget.image_width.value = 8
    widget.channels.value = 1
    widget.scale.value = (0.0, 1.0)
    widget.export_button.click()
    assert widget.busy and widget.export_button.disabled  # the kernel's thread is already free again
    result = widget.wait(timeout=120)

    assert widget.error is None, widget.error
    assert set(result.signatures) == {"serving_default", "predict_images"}
    ((alias, info),) = result.signatures["predict_images"].inputs.items()
    assert info.dtype == 7  # DT_STRING: encoded image files
    assert not widget.export_button.disabled
    html = "".join(o["data"].get("text/html", "") for o in widget.output.outputs)
    assert "predict_images" in html and "AVAILABLE" in html
