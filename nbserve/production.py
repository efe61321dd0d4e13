"""From the notebook to production: the files and commands that serve the same model directories with
TensorFlow Serving itself — ``tensorflow_model_server``, the ``tensorflow/serving`` Docker image, or a
Kubernetes Deployment + Service.

``write_production_files(out_dir, server=server)`` (or ``models=[ModelConfig(...)]``) writes

* ``models.config``: ModelServerConfig text with the host paths (for ``tensorflow_model_server`` and
  ``nbserve --model_config_file``);
* ``models.container.config``: the same models at ``/models/<name>`` as the container sees them;
* ``kubernetes.yaml``: a ConfigMap with that config, a Deployment of ``tensorflow/serving`` mounting
  each base path (``hostPath``; swap in a PersistentVolumeClaim or a ``gs://`` / ``s3://`` base path on
  a real cluster) and a Service exposing gRPC and REST;
* copies of the batching / monitoring config files when given,

and returns a :class:`ProductionFiles` holding the commands to run them. Nothing is run here.
"""

from __future__ import annotations

import os
import shlex
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING

from nbserve.manager.config import ModelConfig, format_model_server_config

if TYPE_CHECKING:
    from nbserve.server.runtime import Server

__all__ = ["DEFAULT_IMAGE", "ProductionFiles", "write_production_files", "served_model_configs"]

DEFAULT_IMAGE = "tensorflow/serving:latest"  # pin a release tag for real deployments
CONTAINER_MODELS = "/models"
CONTAINER_CONFIG = "/config"


@dataclass(frozen=True)
class ProductionFiles:
    """What ``write_production_files`` wrote, and the commands that use it (shown, never run)."""

    directory: Path
    model_config: Path
    container_config: Path
    kubernetes: Path
    flags: tuple[str, ...]  # tensorflow_model_server's flags for this machine (also nbserve's)
    commands: dict[str, str]

    def __repr__(self) -> str:
        return f"ProductionFiles({str(self.directory)!r})"

    def __str__(self) -> str:
        files = "\n".join(f"  {path}" for path in (self.model_config, self.container_config, self.kubernetes))
        commands = "\n\n".join(f"# {title}\n{command}" for title, command in self.commands.items())
        return f"Wrote to {self.directory}:\n{files}\n\n{commands}"

    def _repr_html_(self) -> str:
        files = "".join(f"<li><code>{escape(str(p))}</code></li>" for p in self._files())
        commands = "".join(
            f"<p><b>{escape(title)}</b></p><pre>{escape(command)}</pre>"
            for title, command in self.commands.items()
        )
        return f"<p>Wrote to <code>{escape(str(self.directory))}</code>:</p><ul>{files}</ul>{commands}"

    def _files(self) -> list[Path]:
        return sorted(p for p in self.directory.iterdir() if p.is_file())


def served_model_configs(server: Server) -> list[ModelConfig]:
    """The disk models ``server`` serves (name, base path, version policy, labels), as configs."""
    return server.model_configs()


def write_production_files(
    out_dir: str | os.PathLike[str],
    models: Iterable[ModelConfig] | None = None,
    *,
    server: Server | None = None,
    image: str = DEFAULT_IMAGE,
    grpc_port: int = 8500,
    rest_port: int = 8501,
    batching_parameters_file: str | os.PathLike[str] | None = None,
    monitoring_config_file: str | os.PathLike[str] | None = None,
    replicas: int = 1,
    app: str = "tf-serving",
) -> ProductionFiles:
    """Write the config files and manifest for ``models`` (default: what ``server`` serves from disk)
    into ``out_dir`` and return them with the ``tensorflow_model_server``, ``nbserve``, ``docker run``
    and ``kubectl`` commands that serve the same directories."""
    if models is None:
        if server is None:
            raise ValueError("Pass models or server.")
        models = served_model_configs(server)
    host_models = [replace(m, base_path=os.path.abspath(m.base_path)) for m in models]
    if not host_models:
        raise ValueError("No models to serve: load or export one first.")
    directory = Path(out_dir).absolute()
    directory.mkdir(parents=True, exist_ok=True)

    container_models = [replace(m, base_path=f"{CONTAINER_MODELS}/{m.name}") for m in host_models]
    model_config = directory / "models.config"
    container_config = directory / "models.container.config"
    model_config.write_text(format_model_server_config(host_models))
    container_config.write_text(format_model_server_config(container_models))

    extra_files = {}  # flag -> file name in out_dir
    if batching_parameters_file is not None:
        extra_files["batching_parameters_file"] = _copy(batching_parameters_file, directory)
    if monitoring_config_file is not None:
        extra_files["monitoring_config_file"] = _copy(monitoring_config_file, directory)

    def flags(config_path: str, config_dir: str) -> list[str]:
        out = [f"--port={grpc_port}", f"--rest_api_port={rest_port}", f"--model_config_file={config_path}"]
        if any(m.version_labels for m in host_models):
            # TF Serving checks labels while the config loads, before any version is AVAILABLE
            out.append("--allow_version_labels_for_unavailable_models")
        if "batching_parameters_file" in extra_files:
            out.append("--enable_batching")
        out += [f"--{flag}={config_dir}/{name}" for flag, name in extra_files.items()]
        return out

    host_flags = flags(str(model_config), str(directory))
    container_flags = flags(f"{CONTAINER_CONFIG}/{container_config.name}", CONTAINER_CONFIG)
    docker = [
        ["docker", "run", "--rm"], ["-p", f"{grpc_port}:{grpc_port}"], ["-p", f"{rest_port}:{rest_port}"],
        *[[_bind(m.base_path, f"{CONTAINER_MODELS}/{m.name}")] for m in host_models],
        [_bind(str(directory), CONTAINER_CONFIG)],
        [image], *[[flag] for flag in container_flags],
    ]  # fmt: skip
    kubernetes = directory / "kubernetes.yaml"
    kubernetes.write_text(
        _kubernetes_manifest(
            app, image, replicas, grpc_port, rest_port, host_models, container_flags,
            {container_config.name: container_config, **{n: directory / n for n in extra_files.values()}},
        )
    )  # fmt: skip
    name = host_models[0].name
    commands = {
        "tensorflow_model_server": _join([["tensorflow_model_server"], *[[flag] for flag in host_flags]]),
        "nbserve (the same flags)": _join([["nbserve"], *[[flag] for flag in host_flags]]),
        "Docker": _join(docker),
        "Kubernetes": f"kubectl apply -f {shlex.quote(str(kubernetes))}\n"
        f"kubectl port-forward service/{app} {grpc_port} {rest_port}",
        "Query it (any of them)": f"curl http://127.0.0.1:{rest_port}/v1/models/{name}",
    }
    return ProductionFiles(directory, model_config, container_config, kubernetes, tuple(host_flags), commands)


def _copy(path: str | os.PathLike[str], directory: Path) -> str:
    source = Path(path).absolute()
    target = directory / source.name
    if source != target:
        shutil.copyfile(source, target)
    return source.name


def _bind(source: str, target: str) -> str:
    return f"--mount=type=bind,source={source},target={target},readonly"


def _join(lines: Sequence[Sequence[str]]) -> str:
    """A shell command, one group of arguments per line."""
    return " \\\n    ".join(shlex.join(line) for line in lines)


def _kubernetes_manifest(
    app: str,
    image: str,
    replicas: int,
    grpc_port: int,
    rest_port: int,
    models: Sequence[ModelConfig],
    args: Sequence[str],
    config_files: dict[str, Path],
) -> str:
    def block(text: str, indent: int) -> str:
        return "\n".join(" " * indent + line for line in text.splitlines())

    data = "\n".join(f"  {name}: |\n{block(path.read_text(), 4)}" for name, path in config_files.items())
    volume_name = {m.name: f"model-{i}" for i, m in enumerate(models)}
    mounts = "\n".join(
        f"            - name: {volume_name[m.name]}\n"
        f"              mountPath: {CONTAINER_MODELS}/{m.name}\n"
        f"              readOnly: true"
        for m in models
    )
    volumes = "\n".join(
        f"        - name: {volume_name[m.name]}\n"
        f"          hostPath:  # the node's copy; on a cluster use a PVC, or a gs:// / s3:// base_path\n"
        f"            path: {m.base_path}\n"
        f"            type: Directory"
        for m in models
    )
    arg_lines = "\n".join(f"            - {arg}" for arg in args)
    return f"""\
# TensorFlow Serving for {", ".join(m.name for m in models)}, written by nbserve.production.
apiVersion: v1
kind: ConfigMap
metadata:
  name: {app}-config
data:
{data}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {app}
  labels: {{app: {app}}}
spec:
  replicas: {replicas}
  selector:
    matchLabels: {{app: {app}}}
  template:
    metadata:
      labels: {{app: {app}}}
    spec:
      containers:
        - name: tensorflow-serving
          image: {image}
          args:
{arg_lines}
          ports:
            - {{name: grpc, containerPort: {grpc_port}}}
            - {{name: rest, containerPort: {rest_port}}}
          readinessProbe:
            httpGet: {{path: /v1/models/{models[0].name}, port: {rest_port}}}
          volumeMounts:
            - name: config
              mountPath: {CONTAINER_CONFIG}
              readOnly: true
{mounts}
      volumes:
        - name: config
          configMap:
            name: {app}-config
{volumes}
---
apiVersion: v1
kind: Service
metadata:
  name: {app}
spec:
  selector: {{app: {app}}}
  ports:
    - {{name: grpc, port: {grpc_port}, targetPort: {grpc_port}}}
    - {{name: rest, port: {rest_port}, targetPort: {rest_port}}}
"""
