"""The latency widget driven through its Python model against a real server: run, cancel mid-run,
re-run and compare; its figures are real pictures; ``%nbserve latency`` opens it prefilled."""

from __future__ import annotations

import io
import time

import psutil
import pytest
from IPython.core.interactiveshell import InteractiveShell
from PIL import Image

from nbserve.demo import digits_images
from nbserve.latency import LatencyWidget
from nbserve.notebook.magics import NbserveMagics
from nbserve.notebook.session import SESSION


def _load_processes() -> list[psutil.Process]:
    children = psutil.Process().children(recursive=True)
    return [p for p in children if "nbserve.latency.load" in " ".join(_cmdline(p))]


def _cmdline(process: psutil.Process) -> list[str]:
    try:
        return process.cmdline()
    except psutil.Error:
        return []


def _assert_picture(data: bytes) -> None:
    image = Image.open(io.BytesIO(data))
    assert image.width > 0 and image.height > 0
    low, high = image.convert("L").getextrema()
    assert low < high, "a single colour"


def test_run_cancel_rerun_compare(server, tmp_path) -> None:
    widget = LatencyWidget("digits", server=server, inputs=digits_images(32)[0], n=32, repeats=2)
    assert "digits" in widget.model.options and "predict_images" in widget.signature.options
    assert widget.signature.value == "serving_default"
    widget.modes["concurrent"].value = True
    widget.concurrency.value = 2

    widget.run_button.click()
    assert widget.run_button.disabled and not widget.cancel_button.disabled
    first = widget.wait(timeout=120)
    assert first is not None and first.complete and widget.error is None
    assert len(first.cases) == 6 and not widget.busy
    assert not widget.run_button.disabled and widget.cancel_button.disabled
    assert widget.progress.value == widget.progress.max and "every request answered" in widget.status.value
    assert set(widget.figures) == {"totals", "distribution"}
    assert widget.results.titles == ("table", "totals", "distribution")
    assert "rest batch [batching off]" in widget.results.children[0].children[0].value
    for name, figure in widget.figures.items():
        figure.savefig(tmp_path / f"{name}.png")
        _assert_picture((tmp_path / f"{name}.png").read_bytes())
    for image in widget.results.children[1:]:
        _assert_picture(image.value)

    # a long run, cancelled in the middle: the widget is ready again, nothing is left running
    widget.n.value, widget.repeats.value = 50_000, 1
    widget.modes["batch"].value = widget.modes["concurrent"].value = False
    widget.run_button.click()
    deadline = time.monotonic() + 60
    while widget.progress.value < 10 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert widget.busy and 0 < widget.progress.value < widget.progress.max
    widget.cancel_button.click()
    assert widget.wait(timeout=30) is first  # the cancelled run does not replace the results
    assert not widget.busy and widget.latency_run is None
    assert not widget.run_button.disabled and widget.cancel_button.disabled
    assert "Cancelled after" in widget.status.value and widget.progress.bar_style == "warning"
    assert _load_processes() == []

    # run again, compared with the first run
    widget.n.value, widget.repeats.value = 32, 2
    widget.modes["batch"].value = True
    widget.compare.value = True
    widget.run_button.click()
    second = widget.wait(timeout=120)
    assert second is not first and second.complete and widget.previous is first
    assert "previous run" in widget.results.children[0].children[0].value
    for image in widget.results.children[1:]:
        _assert_picture(image.value)
    assert _load_processes() == []


def test_bad_settings_show_in_the_widget(server) -> None:
    widget = LatencyWidget("digits", server=server)
    for box in widget.modes.values():
        box.value = False
    widget.run_button.click()
    assert not widget.busy and "choose at least one mode" in widget.status.value


def test_magic_opens_the_widget_prefilled(server, monkeypatch: pytest.MonkeyPatch) -> None:
    shell = InteractiveShell.instance()
    shell.register_magics(NbserveMagics)
    monkeypatch.setattr(SESSION, "server", server)
    widget = shell.run_line_magic(
        "nbserve", "latency digits --signature predict_images -n 16 --modes batch sweep --transports grpc"
    )
    assert isinstance(widget, LatencyWidget) and not widget.busy
    assert (widget.model.value, widget.signature.value, widget.n.value) == ("digits", "predict_images", 16)
    assert [m for m, box in widget.modes.items() if box.value] == ["batch", "sweep"]
    assert [t for t, box in widget.transports.items() if box.value] == ["grpc"]
