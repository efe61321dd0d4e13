"""Model management from Python, behind ``Server.load / unload / models / urls``: what the notebook
magics and widgets use, so they never reach into the manager."""

from __future__ import annotations

import json
import os
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from nbserve.codecs.dtypes import DT_STRING, data_type_name, numpy_dtype
from nbserve.errors import InvalidArgument, NotFound, ServingError
from nbserve.manager.config import ModelConfig, VersionPolicy, is_relative_path
from nbserve.manager.manager import Manager
from nbserve.servables.function import probe_array
from nbserve.signature import DEFAULT_SERVING_SIGNATURE, Signature
from nbserve.tables import html_table

__all__ = ["ModelSummary", "VersionSummary", "load_model", "model_urls", "summarize", "unload_model"]

PolicyKind = Literal["latest", "all", "specific"]
_MAX_EXAMPLE_VALUES = 64  # larger inputs get a placeholder in the curl example


@dataclass(frozen=True)
class VersionSummary:
    """One version: TF Serving's state name (``AVAILABLE``, ``END``, ...), and its error if it failed."""

    version: int
    state: str
    live: bool = False
    error: str | None = None


@dataclass(frozen=True)
class ModelSummary:
    """A served model: ``base_path`` and ``policy`` are None for a model with live versions only."""

    name: str
    base_path: str | None
    policy: str | None
    versions: tuple[VersionSummary, ...]  # newest first
    labels: dict[str, int] = field(default_factory=dict)

    def _repr_html_(self) -> str:
        by_version: dict[int, list[str]] = {}
        for label, version in sorted(self.labels.items()):
            by_version.setdefault(version, []).append(label)
        rows = [
            [str(v.version), v.state, "live" if v.live else "disk", ", ".join(by_version.get(v.version, ()))]
            + [v.error or ""]
            for v in self.versions
        ]
        source = f"{self.base_path} (policy {self.policy})" if self.base_path else "live only"
        return html_table(("version", "state", "source", "labels", "error"), rows, f"{self.name}: {source}")


def describe_policy(policy: VersionPolicy) -> str:
    """``latest 1``, ``all`` or ``specific 1, 2``."""
    if policy.kind == "latest":
        return f"latest {policy.num_versions}"
    if policy.kind == "specific":
        return "specific " + ", ".join(map(str, policy.versions))
    return policy.kind


def summarize(manager: Manager) -> list[ModelSummary]:
    """Every model in the config, then every model with live versions only (by name)."""
    configs = {c.name: c for c in manager.configs()}
    live = manager.live_versions()
    summaries = []
    for name in [*configs, *sorted(set(live) - set(configs))]:
        config = configs.get(name)
        try:
            statuses = manager.status(name)
        except NotFound:  # no version seen yet
            statuses = []
        versions = tuple(
            VersionSummary(
                s.version,
                s.state.name,
                s.version in live.get(name, ()),
                None if s.error_code == "OK" else f"{s.error_code}: {s.error_message}",
            )
            for s in statuses
        )
        summaries.append(
            ModelSummary(
                name,
                config.base_path if config else None,
                describe_policy(config.policy) if config else None,
                versions,
                manager.labels(name),
            )
        )
    return summaries


def load_model(
    manager: Manager,
    name: str,
    base_path: str | os.PathLike[str],
    *,
    policy: PolicyKind = "latest",
    num_versions: int = 1,
    versions: Collection[int] = (),
    labels: Mapping[str, int] | None = None,
) -> None:
    """Add ``name`` to the config, or replace its entry, and block until each of its aspired
    versions loaded or failed. A new base path unloads the old versions first. When no version
    becomes AVAILABLE, the previous config comes back and the (TF Serving) error is raised."""
    config = ModelConfig(name, _absolute(base_path), _policy(policy, num_versions, versions))
    previous = manager.configs()
    others = [c for c in previous if c.name != name]
    old = next((c for c in previous if c.name == name), None)
    if old is not None and old.base_path != config.base_path:
        # Versions are known by number only: the old ones must go before same-numbered new ones load.
        manager.reload_config(others, wait=False)
        manager.wait_unloaded(name)
    try:
        manager.reload_config([*others, config], wait=True, settle=[name])
    except ServingError:
        manager.reload_config(previous, wait=False)
        raise
    for label, version in (labels or {}).items():
        manager.set_label(name, label, version)


def unload_model(manager: Manager, name: str) -> None:
    """Take ``name`` out of the config and unserve its live versions; blocks until they unloaded."""
    configs = manager.configs()
    configured = any(c.name == name for c in configs)
    live = name in manager.live_versions()
    if not configured and not live:
        raise NotFound(f"Model {name} is not served; server.models() lists the served models")
    if configured:
        manager.reload_config([c for c in configs if c.name != name], wait=False)
        manager.wait_unloaded(name)
    if live:
        manager.remove_live(name)


def model_urls(
    manager: Manager, name: str, rest_url: str | None, grpc_address: str | None
) -> dict[str, str | None]:
    """REST predict / metadata / status URLs, the gRPC address and a curl example built from the
    served signature (None without REST, or while no version is AVAILABLE)."""
    if name not in manager.model_names() and name not in manager.live_versions():
        raise NotFound(f"Model {name} is not served; server.models() lists the served models")
    try:
        signature = example_signature(manager.servable(name).signatures)
    except NotFound:
        signature = None
    rest = f"{rest_url}/v1/models/{name}" if rest_url else None
    curl = None
    if rest is not None and signature is not None and signature.inputs:
        curl = f"curl -d '{_example_body(signature)}' {rest}:predict"
    return {
        "rest_predict": rest and f"{rest}:predict",
        "rest_metadata": rest and f"{rest}/metadata",
        "rest_status": rest,
        "grpc_address": grpc_address,
        "curl": curl,
    }


def example_signature(signatures: Mapping[str, Signature]) -> Signature | None:
    """``serving_default``, else the first signature that takes inputs."""
    if DEFAULT_SERVING_SIGNATURE in signatures:
        return signatures[DEFAULT_SERVING_SIGNATURE]
    return next((s for _, s in sorted(signatures.items()) if s.inputs), None)


# A shell fragment closing the curl body's single quotes to splice in a file as base64.
_B64_FILE = "\"'\"$(base64 < image.jpg | tr -d '\\n')\"'\""


def _example_body(signature: Signature) -> str:
    values = {alias: _example_value(info.dtype, info.shape) for alias, info in signature.inputs.items()}
    instance = next(iter(values.values())) if len(values) == 1 else values
    body = {"instances": [instance]}
    if signature.name != DEFAULT_SERVING_SIGNATURE:
        body = {"signature_name": signature.name, **body}
    return json.dumps(body).replace(json.dumps(_B64_FILE), _B64_FILE)


def _example_value(dtype: int, shape: tuple[int, ...] | None) -> object:
    row = () if shape is None else shape[1:]  # one instance: the batch dimension goes
    if dtype == DT_STRING:
        return {"b64": _B64_FILE}
    if int(np.prod([max(d, 1) for d in row])) > _MAX_EXAMPLE_VALUES:
        return f"<{data_type_name(dtype)} {list(row)}>"
    return probe_array(row, numpy_dtype(dtype)).tolist()


def _absolute(base_path: str | os.PathLike[str]) -> str:
    path = os.fspath(base_path)
    return os.path.abspath(os.path.expanduser(path)) if is_relative_path(path) else path


def _policy(kind: str, num_versions: int, versions: Collection[int]) -> VersionPolicy:
    if kind not in ("latest", "all", "specific"):
        raise InvalidArgument(f"policy must be 'latest', 'all' or 'specific', got {kind!r}")
    if (kind == "specific") != bool(versions):
        raise InvalidArgument("Pass versions=(...) exactly when policy='specific'")
    if num_versions < 1:
        raise InvalidArgument(f"num_versions must be at least 1, got {num_versions}")
    return VersionPolicy(kind, num_versions, tuple(int(v) for v in versions))
