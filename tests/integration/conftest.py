"""Real servers on 127.0.0.1 (OS-chosen ports) serving real SavedModels."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from models import write_half_plus_two  # noqa: E402
from traffic import wait_for  # noqa: E402

from nbserve.demo import export_demo_model, train_digits_model  # noqa: E402
from nbserve.server.runtime import Server  # noqa: E402

CONFIG = """
model_config_list {{
  config {{ name: "half_plus_two" base_path: "{hpt}" model_platform: "tensorflow"
           model_version_policy {{ all {{}} }}
           version_labels {{ key: "stable" value: 123 }} version_labels {{ key: "canary" value: 124 }} }}
  config {{ name: "digits" base_path: "{digits}" model_platform: "tensorflow" }}
}}
"""


@dataclass
class Models:
    half_plus_two: str
    digits: str
    digits_model: object
    config_file: str


@pytest.fixture(scope="session")
def models(tmp_path_factory: pytest.TempPathFactory) -> Models:
    root = tmp_path_factory.mktemp("models")
    hpt, digits = str(root / "half_plus_two"), str(root / "digits")
    os.makedirs(hpt)
    write_half_plus_two(hpt, 123)
    write_half_plus_two(hpt, 124, a=2.0, b=1.0)
    model = train_digits_model()
    export_demo_model(model, digits, version=1)
    config_file = root / "models.config"
    config_file.write_text(CONFIG.format(hpt=hpt, digits=digits))
    return Models(hpt, digits, model, str(config_file))


@pytest.fixture(scope="session")
def server(models: Models) -> Iterator[Server]:
    # labels in a startup config need the flag, as with tensorflow_model_server
    with Server(
        model_config_file=models.config_file,
        port=0,
        rest_api_port=0,
        allow_version_labels_for_unavailable_models=True,
    ) as running:
        # Startup waits for one version per model, as TF Serving does; tests also pin version 123.
        both = {(123, "AVAILABLE"), (124, "AVAILABLE")}
        assert wait_for(
            lambda: {(s.version, s.state.name) for s in running.manager.status("half_plus_two")} == both,
            timeout=60,
        )
        yield running
