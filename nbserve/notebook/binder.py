"""Binder (and any JupyterHub) detection, and the URL at which the browser reaches a server port.

On Binder only the notebook server's own URL is reachable from outside; ``jupyter-server-proxy``
forwards ``{JUPYTERHUB_SERVICE_PREFIX}proxy/{port}/...`` to ``127.0.0.1:{port}``. ``where(server,
model)`` shows both the kernel-local URLs and, on a hub, the proxied one (as a link the browser
resolves against the notebook's own origin).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from html import escape
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from nbserve.server.runtime import Server

__all__ = ["on_binder", "hub_prefix", "proxied_path", "Where", "where"]


def on_binder(env: Mapping[str, str] | None = None) -> bool:
    """True on mybinder.org (``BINDER_SERVICE_HOST``) or any JupyterHub (``JUPYTERHUB_SERVICE_PREFIX``)."""
    env = os.environ if env is None else env
    return bool(env.get("BINDER_SERVICE_HOST") or env.get("JUPYTERHUB_SERVICE_PREFIX"))


def hub_prefix(env: Mapping[str, str] | None = None) -> str:
    """The notebook server's URL prefix (``/user/<name>/`` on a hub, ``/`` otherwise), ending in ``/``."""
    env = os.environ if env is None else env
    prefix = env.get("JUPYTERHUB_SERVICE_PREFIX") or "/"
    return prefix if prefix.endswith("/") else prefix + "/"


def proxied_path(port: int, path: str = "", env: Mapping[str, str] | None = None) -> str:
    """``{prefix}proxy/{port}/{path}``: ``port`` on 127.0.0.1 as jupyter-server-proxy exposes it."""
    return f"{hub_prefix(env)}proxy/{port}/{path.lstrip('/')}"


@dataclass(frozen=True)
class Where:
    """Where model ``model`` answers: from the kernel / this machine, and through the notebook server."""

    model: str
    rest_url: str | None
    grpc_address: str | None
    proxied: str | None  # set on Binder / a hub

    def __str__(self) -> str:
        lines = [f"REST  {self.rest_url}/v1/models/{self.model}" if self.rest_url else "REST  off"]
        lines.append(f"gRPC  {self.grpc_address}" if self.grpc_address else "gRPC  off")
        if self.proxied:
            lines.append(f"On Binder, from your browser: {self.proxied} (on this notebook's host)")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        rest = f"{self.rest_url}/v1/models/{self.model}" if self.rest_url else "off"
        rows = [
            f"<li>REST (this machine): <code>{escape(rest)}</code></li>",
            f"<li>gRPC (this machine): <code>{escape(self.grpc_address or 'off')}</code></li>",
        ]
        if self.proxied:
            rows.append(
                f'<li>On Binder, from your browser: <a href="{escape(self.proxied)}" target="_blank">'
                f"<code>{escape(self.proxied)}</code></a> (through jupyter-server-proxy)</li>"
            )
        return f"<ul>{''.join(rows)}</ul>"


def where(server: Server, model: str, env: Mapping[str, str] | None = None) -> Where:
    """The URLs of ``model`` on ``server``; the proxied REST path only when :func:`on_binder`."""
    proxied = None
    if server.rest_port and on_binder(env):
        proxied = proxied_path(server.rest_port, f"v1/models/{model}", env)
    return Where(model, server.rest_url, server.grpc_address, proxied)
