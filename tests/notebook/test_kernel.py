"""The %nbserve magics in a real kernel: lifecycle, export, outside clients while a cell is busy,
errors as one line, interrupts, stop and restart freeing the ports. One kernel for the module; the
tests run in file order and build on each other's state."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import requests
from kernel_harness import Kernel, Reply

from nbserve.ports import free_port, port_is_free

CLIENT = os.path.join(os.path.dirname(__file__), "outside_client.py")
ZEROS = json.dumps(np.zeros((8, 8, 1)).tolist())  # one instance for the tiny model

TRAIN = """
import json, os
import numpy as np, keras
from PIL import Image
keras.utils.set_random_seed(0)
x = np.random.default_rng(0).random((32, 8, 8, 1)).astype("float32")
layers = [keras.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(2, activation="softmax")]
model = keras.Sequential(layers)
model.compile("sgd", "sparse_categorical_crossentropy")
model.fit(x, (x.mean(axis=(1, 2, 3)) > 0.5).astype("int32"), epochs=1, verbose=0)
pixels = np.rint(x[:3] * 255).astype(np.uint8)
for i, image in enumerate(pixels):
    Image.fromarray(image[..., 0]).save(f"{i}.png")
"""

EXPECTED = """
case = {
    "instances": x[:3].tolist(),
    "images": [os.path.abspath(f"{i}.png") for i in range(3)],
    "tensor": model.predict(x[:3], verbose=0).tolist(),
    "image": model.predict(pixels.astype("float32") * np.float32(1 / 255), verbose=0).tolist(),
    "aliases": {key: list(signature.inputs) for key, signature in _.signatures.items()},
}
print(json.dumps(case))
"""

BUSY = """
import os, time
import numpy as np
started, spins = time.time(), 0
while not os.path.exists("done") and time.time() - started < 120:
    np.sort(np.random.rand(20000))  # real work, holding the GIL between numpy calls
    spins += 1
print("spins", spins, "done" if os.path.exists("done") else "timeout")
"""


@pytest.fixture(scope="module")
def ports() -> tuple[int, int]:
    return free_port(), free_port()


def one_line_error(reply: Reply) -> str:
    assert reply.status == "error"
    assert len(reply.error["traceback"]) == 1, reply.error["traceback"]
    return reply.error["traceback"][0]


def test_load_ext_imports_nothing_heavy(kernel: Kernel) -> None:
    reply = kernel.ok(
        "import sys\n%load_ext nbserve\nprint(sorted({'tensorflow', 'grpc', 'keras'} & set(sys.modules)))"
    )
    assert reply.stdout.strip() == "[]"


def test_help_texts(kernel: Kernel) -> None:
    assert "label NAME LABEL VERSION" in kernel.ok("%nbserve --help").stdout
    assert "--rest_api_port" in kernel.ok("%nbserve start --help").stdout
    load = kernel.ok("%nbserve load --help").stdout
    assert load.startswith("usage: %nbserve load") and "--policy" in load
    assert "--grpc" in kernel.ok("%nbserve predict --help").stdout


def test_errors_are_one_line(kernel: Kernel) -> None:
    assert "No server is running" in one_line_error(kernel.run("%nbserve unload nope"))
    assert "invalid int value: 'abc'" in one_line_error(kernel.run("%nbserve start --port=abc"))


def test_start_reuses_or_replaces(kernel: Kernel, ports: tuple[int, int]) -> None:
    grpc_port, rest_port = ports
    flags = f"--port={grpc_port} --rest_api_port={rest_port}"
    first = kernel.ok(f"%nbserve start {flags}").stdout
    assert first.startswith(f"Serving: gRPC at 127.0.0.1:{grpc_port}, REST at http://127.0.0.1:{rest_port}")
    count = "import threading; print(len(threading.enumerate()))"
    threads = kernel.ok(count).stdout
    assert kernel.ok(f"%nbserve start {flags}").stdout.startswith("Already serving")
    # new flags, same ports: only possible once the old server let go of them
    replaced = kernel.ok(f"%nbserve start {flags} --file_system_poll_wait_seconds=0.2").stdout
    assert replaced.startswith(f"Replaced the server; serving: gRPC at 127.0.0.1:{grpc_port}")
    assert kernel.ok(count).stdout == threads


def test_export_then_outside_clients_while_a_cell_is_busy(kernel: Kernel, ports, tmp_path) -> None:
    grpc_port, rest_port = ports
    inputs = tmp_path / "inputs.json"
    client = subprocess.Popen(
        [
            sys.executable,
            CLIENT,
            f"--rest=http://127.0.0.1:{rest_port}",
            f"--grpc=127.0.0.1:{grpc_port}",
            "--model=tiny",
            f"--inputs={inputs}",
            "--images-signature=predict_images",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        kernel.ok(TRAIN)
        exported = kernel.ok("%nbserve export model --name tiny --signature both")
        assert "Serving tiny version 1: AVAILABLE" in exported.stdout
        assert "predict_images" in exported.html() and "DT_STRING" in exported.html()
        case = json.loads(kernel.ok(EXPECTED).stdout)
        busy = kernel.submit(BUSY)
        aliases = case["aliases"]
        ready = {**case, "input": aliases["serving_default"][0], "image_input": aliases["predict_images"][0]}
        partial = tmp_path / "inputs.part"
        partial.write_text(json.dumps(ready))
        partial.rename(inputs)  # the client starts on seeing the file: it must appear whole
        out, err = client.communicate(timeout=120)
    finally:
        client.kill()
        (kernel.cwd / "done").write_text("")
    cell = kernel.collect(busy)
    assert client.returncode == 0, err
    # the cell was still spinning when the client finished: it only stops once "done" exists
    assert cell.status == "ok" and cell.stdout.split()[0::2] == ["spins", "done"], cell.stdout
    answers = json.loads(out)
    np.testing.assert_allclose(answers["rest"]["predictions"], case["tensor"], rtol=1e-5)
    np.testing.assert_allclose(answers["grpc"]["dense"], case["tensor"], rtol=1e-5)
    np.testing.assert_allclose(answers["rest_b64"]["predictions"], case["image"], rtol=1e-5)
    # the in-graph preprocessing answers identically whichever door the bytes come in by
    np.testing.assert_array_equal(
        np.float32(answers["grpc_bytes"]["dense"]), np.float32(answers["rest_b64"]["predictions"])
    )


def test_predict_cell_magic_over_rest_and_grpc(kernel: Kernel) -> None:
    body = '{"instances": %s}' % json.dumps(np.full((2, 8, 8, 1), 0.25).tolist())
    expected = kernel.ok(
        "print(model.predict(np.full((2, 8, 8, 1), 0.25, 'float32'), verbose=0)[0, 0])"
    ).stdout
    for flags in ("", " --grpc"):
        reply = kernel.ok(f"%%nbserve predict tiny{flags}\n{body}")
        html = reply.html()
        assert "<th" in html and "dense" in html and ("gRPC" if flags else "REST") in html
        value = float(kernel.ok("print(_.outputs['dense'][0, 0])").stdout)
        assert value == pytest.approx(float(expected), rel=1e-5)
    # image bytes as {"b64": ...}: REST passes them on, the gRPC path encodes them as DT_STRING itself
    images = "import base64\nb64 = base64.b64encode(open('0.png', 'rb').read()).decode()"
    kernel.ok(images)
    for flags in ("", " --grpc"):
        body = '{"instances": [{"b64": "%s"}]}' % kernel.ok("print(b64)").stdout.strip()
        kernel.ok(f"%%nbserve predict tiny --signature predict_images{flags}\n{body}")
        value = float(kernel.ok("print(_.outputs['dense'][0, 0])").stdout)
        assert value == pytest.approx(float(kernel.ok("print(case['image'][0][0])").stdout), rel=1e-5)
    missing = one_line_error(kernel.run('%%nbserve predict nope --grpc\n{"instances": [1]}'))
    assert "NOT_FOUND: Servable not found for request: Latest(nope)" in missing
    bad = one_line_error(kernel.run('%%nbserve predict tiny\n{"instances": [1'))
    assert "JSON Parse error" in bad


def test_status_label_load_unload(kernel: Kernel, ports) -> None:
    grpc_port, rest_port = ports
    assert "label stable -> version 1" in kernel.ok("%nbserve label tiny stable 1").stdout.replace("'", "")
    status = kernel.ok("%nbserve status").html()
    for text in (
        "tiny",
        "AVAILABLE",
        "stable",
        f"127.0.0.1:{grpc_port}",
        f"http://127.0.0.1:{rest_port}/v1/models/tiny:predict",
        "curl -d",
    ):
        assert text in status, text
    labelled = kernel.ok('%%nbserve predict tiny --label stable\n{"instances": [' + ZEROS + "]}").html()
    assert "tiny version 1 via REST" in labelled
    loaded = kernel.ok("%nbserve load copy models/tiny --policy all").html()
    assert "copy" in loaded and "AVAILABLE" in loaded
    assert requests.get(f"http://127.0.0.1:{rest_port}/v1/models/copy", timeout=10).ok
    assert "Unloaded model copy" in kernel.ok("%nbserve unload copy").stdout
    body = '{"instances": [%s]}' % ZEROS
    answer = requests.post(f"http://127.0.0.1:{rest_port}/v1/models/copy:predict", data=body, timeout=10)
    assert answer.status_code == 404


def test_keyboard_interrupt_leaves_the_server_serving(kernel: Kernel, ports) -> None:
    _, rest_port = ports
    sleeping = kernel.submit("import time\nprint('sleeping', flush=True)\ntime.sleep(60)")
    while kernel.client.get_iopub_msg(timeout=30)["content"].get("text") != "sleeping\n":
        pass  # interrupt only once the cell runs, not while the kernel is between messages
    kernel.manager.interrupt_kernel()
    reply = kernel.collect(sleeping)
    assert reply.status == "error" and reply.error["ename"] == "KeyboardInterrupt"
    answer = requests.get(f"http://127.0.0.1:{rest_port}/v1/models/tiny", timeout=10)
    assert answer.json()["model_version_status"][0]["state"] == "AVAILABLE"


def test_stop_frees_the_ports(kernel: Kernel, ports) -> None:
    grpc_port, rest_port = ports
    assert kernel.ok("%nbserve stop").stdout.startswith(f"Stopped the server; ports {grpc_port}, {rest_port}")
    assert port_is_free(grpc_port) and port_is_free(rest_port)
    assert kernel.ok("%nbserve stop").stdout.strip() == "No server was running."


def test_unload_ext_removes_the_magics_and_the_hook(kernel: Kernel) -> None:
    hooked = "print(hasattr(get_ipython().kernel.do_shutdown, '_nbserve_original'))"
    assert kernel.ok(hooked).stdout.strip() == "True"
    kernel.ok("%unload_ext nbserve")
    assert kernel.run("%nbserve status").status == "error"
    assert kernel.ok(hooked).stdout.strip() == "False"
    kernel.ok("%load_ext nbserve")
    assert kernel.ok(hooked).stdout.strip() == "True"


def test_restart_frees_the_ports(kernel: Kernel, ports) -> None:
    grpc_port, rest_port = ports
    kernel.ok(f"%nbserve start --port={grpc_port} --rest_api_port={rest_port}")
    assert not port_is_free(grpc_port) and not port_is_free(rest_port)
    # free as soon as the kernel acknowledges the request, not only once its process has exited
    assert kernel.request_shutdown(restart=True)["status"] == "ok"
    assert port_is_free(grpc_port) and port_is_free(rest_port)
    kernel.restart()
    assert port_is_free(grpc_port) and port_is_free(rest_port)
    kernel.ok(f"%load_ext nbserve\n%nbserve start --port={grpc_port} --rest_api_port={rest_port}")
