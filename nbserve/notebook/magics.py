"""``%nbserve`` line magics and the ``%%nbserve predict`` cell magic.

Each subcommand has its own magic_arguments parser (``%nbserve <command> --help``); failures surface
as one line (NotebookError), never a traceback. Heavy modules load inside the commands, so
``%load_ext nbserve`` stays instant.
"""

from __future__ import annotations

import contextlib
import inspect
import io
import os
import shlex
import sys
from collections.abc import Callable
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring

from nbserve.errors import ServingError
from nbserve.latency.plan import MODES, TRANSPORTS
from nbserve.notebook.errors import NotebookError
from nbserve.notebook.session import SESSION, default_base_path

_HELP = ("-h", "--help")


@magics_class
class NbserveMagics(Magics):
    """``%nbserve start|stop|status|load|unload|label|export`` and ``%%nbserve predict``."""

    @line_cell_magic
    def nbserve(self, line: str, cell: str | None = None) -> Any:
        """Serve models from this kernel over TF Serving's REST and gRPC APIs.

        Commands (%nbserve <command> --help for each):
          start [tensorflow_model_server flags]   start (or reuse / replace) the kernel's server
          stop                                    stop it and free its ports
          status                                  models, versions, states, labels, ports and URLs
          load NAME PATH [--policy ...]           serve the versions under PATH as model NAME
          unload NAME                             stop serving model NAME
          label NAME LABEL VERSION                point version label LABEL at VERSION
          export VAR --name NAME [...]            export the model in variable VAR as a new version
          %%nbserve predict MODEL [...]           send the cell's JSON request, show the outputs
          latency MODEL [...]                     the latency lab: batch vs one-by-one, REST vs gRPC
          ab MODEL --production V --experimental V [--split 10 | --shadow 100]   A/B experiment widget
        """
        command, _, rest = line.strip().partition(" ")
        handler = self._commands().get(command)
        if handler is None:
            if command in ("", "help", *_HELP):
                print(inspect.cleandoc(self.nbserve.__doc__ or ""))
                return None
            raise UsageError(f"Unknown command {command!r}. Commands: {', '.join(self._commands())}.")
        if any(token in _HELP for token in _split(rest)):
            print(_help_text(command, handler))
            return None
        if cell is not None and command != "predict":
            raise UsageError(
                f"%%nbserve {command} takes no cell body; use the line magic %nbserve {command}."
            )
        try:
            return handler(rest, cell)
        except ServingError as error:
            raise NotebookError(error.message, error.code) from None

    def _commands(self) -> dict[str, Callable[[str, str | None], Any]]:
        return {
            "start": self._start,
            "stop": self._stop,
            "status": self._status,
            "load": self._load,
            "unload": self._unload,
            "label": self._label,
            "export": self._export,
            "predict": self._predict,
            "latency": self._latency,
            "ab": self._ab,
        }

    # -- server lifecycle ------------------------------------------------------------------------------

    def _start(self, line: str, cell: str | None) -> None:
        argv = _split(line)
        movable = [flag for flag in ("port", "rest_api_port") if not _given(argv, flag)]
        print(SESSION.start(_parse_flags(argv), movable))

    def _stop(self, line: str, cell: str | None) -> None:
        """Stop the kernel's server and free its ports."""
        _no_arguments("stop", line)
        server = SESSION.server
        ports = [p for p in (server.grpc_port, server.rest_port) if p] if server else []
        if SESSION.stop():
            print(f"Stopped the server; ports {', '.join(map(str, ports))} are free.")
        else:
            print("No server was running.")

    def _status(self, line: str, cell: str | None) -> Any:
        """Show the server's ports, models, versions, states, labels and URLs."""
        from nbserve.notebook.status import StatusReport

        _no_arguments("status", line)
        return StatusReport.of(SESSION.server)

    # -- models ------------------------------------------------------------------------------------------

    @magic_arguments("nbserve load")
    @argument("name", help="Model name to serve the versions as.")
    @argument("path", help="Base path holding the numbered version directories (made absolute).")
    @argument("--policy", choices=("latest", "all", "specific"), default="latest", help="Version policy.")
    @argument("--versions", type=int, nargs="+", default=[], help="Versions to serve with --policy specific.")
    @argument("--num_versions", type=int, default=1, help="How many latest versions (--policy latest).")
    def _load(self, line: str, cell: str | None) -> Any:
        """Serve the version directories under PATH as model NAME (TF Serving's model_version_policy)."""
        from nbserve.notebook.status import StatusReport

        args = parse_argstring(self._load, line)
        server = SESSION.require()
        server.load(
            args.name,
            os.path.abspath(os.path.expanduser(args.path)),
            policy=args.policy,
            num_versions=args.num_versions,
            versions=tuple(args.versions),
        )
        return StatusReport.of(server, only=args.name)

    @magic_arguments("nbserve unload")
    @argument("name", help="Model to stop serving.")
    def _unload(self, line: str, cell: str | None) -> None:
        """Stop serving model NAME and unload all its versions."""
        args = parse_argstring(self._unload, line)
        SESSION.require().unload(args.name)
        print(f"Unloaded model {args.name}.")

    @magic_arguments("nbserve label")
    @argument("name", help="Model name.")
    @argument("label", help="Version label, e.g. stable or canary.")
    @argument("version", type=int, help="Version the label points at.")
    def _label(self, line: str, cell: str | None) -> None:
        """Point version label LABEL of model NAME at VERSION (served under /labels/LABEL)."""
        args = parse_argstring(self._label, line)
        SESSION.require().set_label(args.name, args.label, args.version)
        print(f"Model {args.name}: label {args.label!r} -> version {args.version}.")

    @magic_arguments("nbserve export")
    @argument("var", help="Variable holding the model (Keras model, tf.Module or tf.function).")
    @argument("--name", required=True, help="Model name to export (and serve) as.")
    @argument("--version", type=int, default=None, help="Version number; the next free one by default.")
    @argument(
        "--base-path", dest="base_path", default=None, help="Model base path; ./models/NAME by default."
    )
    @argument("--signature", default="tensor", help="Signatures to write: tensor, image-bytes or both.")
    @argument(
        "--image-size",
        dest="image_size",
        type=int,
        nargs=2,
        metavar=("H", "W"),
        default=None,
        help="image-bytes: resize decoded images to H x W (default: the model's input size).",
    )
    @argument(
        "--channels",
        type=int,
        choices=(1, 3),
        default=None,
        help="image-bytes: decode to 1 or 3 channels (default: the model's).",
    )
    @argument(
        "--scale",
        type=float,
        nargs=2,
        metavar=("LOW", "HIGH"),
        default=(0.0, 1.0),
        help="image-bytes: scale pixels to [LOW, HIGH]. Default 0 1.",
    )
    def _export(self, line: str, cell: str | None) -> Any:
        """Export the model in variable VAR as a new version of model NAME (atomically, validated by a
        probe); a running server loads it (and serves NAME if it did not yet)."""
        import nbserve
        from nbserve.notebook.session import publish

        args = parse_argstring(self._export, line)
        if args.var not in self.shell.user_ns:
            raise NotebookError(f"No variable named {args.var!r} in this kernel.", "NOT_FOUND")
        server = SESSION.current()
        base_path = (
            os.path.abspath(args.base_path) if args.base_path else default_base_path(args.name, server)
        )
        result = nbserve.export(
            self.shell.user_ns[args.var],
            base_path,
            name=args.name,
            version=args.version,
            signatures=args.signature,
            image_size=tuple(args.image_size) if args.image_size else None,
            channels=args.channels,
            scale=tuple(args.scale),
        )
        if server is not None:
            print(publish(server, args.name, base_path, result.version))
        return result

    # -- inference -----------------------------------------------------------------------------------------

    @magic_arguments("%nbserve predict")
    @argument("model", help="Model name.")
    @argument("--signature", default=None, help="Signature name (default: serving_default).")
    @argument("--grpc", action="store_true", help="Send over gRPC instead of REST.")
    @argument("--version", type=int, default=None, help="Ask for this version.")
    @argument("--label", default=None, help="Ask for the version this label points at.")
    def _predict(self, line: str, cell: str | None) -> Any:
        """Send the cell body, a TF Serving JSON request ({"instances": [...]} or {"inputs": ...}),
        to MODEL's Predict API and show the outputs as a table."""
        from nbserve.notebook.predict import predict

        args = parse_argstring(self._predict, line)
        if cell is None or not cell.strip():
            raise UsageError("predict sends the cell body: use %%nbserve predict MODEL with a JSON request.")
        return predict(
            SESSION.require(),
            args.model,
            cell,
            signature=args.signature,
            version=args.version,
            label=args.label,
            use_grpc=args.grpc,
        )

    @magic_arguments("%nbserve latency")
    @argument("model", help="Model name.")
    @argument("--signature", default=None, help="Signature name (default: serving_default).")
    @argument(
        "--transports",
        nargs="+",
        choices=TRANSPORTS,
        default=["rest", "grpc"],
        metavar="T",
        help="rest, grpc, inprocess. Default: rest grpc.",
    )
    @argument(
        "--modes",
        nargs="+",
        choices=MODES,
        default=["batch", "sequential"],
        metavar="M",
        help="batch, sequential, concurrent, sweep. Default: batch sequential.",
    )
    @argument("-n", type=int, default=64, help="N: rows each mode sends. Default 64.")
    @argument("--concurrency", type=int, default=4, help="k: clients of the concurrent mode. Default 4.")
    @argument("--repeats", type=int, default=3, help="Rounds per case. Default 3.")
    @argument(
        "--batching",
        choices=("server", "compare", "off", "on"),
        default="server",
        help="server: as the kernel's server runs; compare: start servers with batching off and on.",
    )
    @argument("--inputs", default=None, help="A folder of images or a .npy file (default: generated).")
    @argument("--run", action="store_true", help="Start the run at once.")
    def _latency(self, line: str, cell: str | None) -> Any:
        """Open the latency lab widget for MODEL, prefilled: one batch of N vs N one-by-one, REST vs gRPC
        vs in-process, server batching off vs on; plots and a table when done."""
        from nbserve.latency.widget import open_latency_lab

        args = parse_argstring(self._latency, line)
        settings = {k: getattr(args, k) for k in ("signature", "transports", "modes", "n", "concurrency")}
        return open_latency_lab(
            args.model, inputs_path=args.inputs, run=args.run, repeats=args.repeats, batching=args.batching,
            **settings,
        )  # fmt: skip

    @magic_arguments("nbserve ab")
    @argument("model", help="Model whose unpinned requests the experiment routes.")
    @argument("--production", required=True, help="Production arm: a version number or a label.")
    @argument("--experimental", required=True, help="Experimental arm: a version number or a label.")
    @argument(
        "--split", type=float, default=None, help="Split mode: %% of requests answered by experimental."
    )
    @argument(
        "--shadow", type=float, default=None, help="Shadow mode: %% of requests mirrored to experimental."
    )
    def _ab(self, line: str, cell: str | None) -> Any:
        """Start an A/B experiment on MODEL (split by default, 10 %) and show its widget: table, plots,
        most-disagreeing inputs, Promote and Rollback."""
        from nbserve.notebook.widgets.ab import ABWidget

        args = parse_argstring(self._ab, line)
        if args.split is not None and args.shadow is not None:
            raise UsageError("Give --split or --shadow, not both.")
        mode = "shadow" if args.shadow is not None else "split"
        settings = {"split": args.split if args.split is not None else 10.0}
        if args.shadow is not None:
            settings["shadow"] = args.shadow
        experiment = SESSION.require().experiment(
            args.model, production=_arm(args.production), experimental=_arm(args.experimental), mode=mode,
            **settings,
        )  # fmt: skip
        return ABWidget(experiment)


def _arm(value: str) -> int | str:
    """A version number, else a label."""
    return int(value) if value.isdigit() else value


def _parse_flags(argv: list[str]) -> Any:
    """tensorflow_model_server flags -> ServerOptions, with argparse's complaints as one line."""
    from nbserve.cli import parse_options

    captured = io.StringIO()
    try:
        with contextlib.redirect_stderr(captured):
            options = parse_options(argv)
    except SystemExit:
        message = captured.getvalue().strip().splitlines()[-1].removeprefix("nbserve: error: ")
        raise NotebookError(
            f"{message} (%nbserve start --help lists the flags)", "INVALID_ARGUMENT"
        ) from None
    sys.stderr.write(captured.getvalue())  # unknown flags are reported, not fatal, as in TF Serving
    return options


def _split(line: str) -> list[str]:
    try:
        return shlex.split(line)
    except ValueError as error:
        raise UsageError(f"Cannot split the arguments: {error}.") from None


def _given(argv: list[str], flag: str) -> bool:
    return any(token == f"--{flag}" or token.startswith(f"--{flag}=") for token in argv)


def _no_arguments(command: str, line: str) -> None:
    if line.strip():
        raise UsageError(f"%nbserve {command} takes no arguments, got {line.strip()!r}.")


def _help_text(command: str, handler: Callable[..., Any]) -> str:
    if command == "start":
        from nbserve.cli import build_parser

        parser = build_parser()
        parser.prog = "%nbserve start"
        parser.epilog = "Without --port / --rest_api_port: 8500 / 8501 when free, else free ports."
        return parser.format_help()
    parser = getattr(handler, "parser", None)
    if parser is None:
        return f"%nbserve {command}\n\n{(handler.__doc__ or '').strip()}"
    # magic_arguments formats usage for docstrings ("::" then an indented line)
    return parser.format_help().replace("::\n\n  %", "usage: %", 1)
