"""``%nbserve status``: the kernel's server at a glance — ports, models, versions, states, labels and
the URLs to paste into curl or a gRPC client."""

from __future__ import annotations

from dataclasses import dataclass
from html import escape
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from nbserve.server.management import ModelSummary
    from nbserve.server.runtime import Server


@dataclass(frozen=True)
class StatusReport:
    """A snapshot of a server's state; renders as HTML in Jupyter and as text elsewhere."""

    grpc_address: str | None
    rest_url: str | None
    models: tuple[ModelSummary, ...]
    urls: dict[str, dict[str, str]]

    @classmethod
    def of(cls, server: Server | None, only: str | None = None) -> StatusReport:
        """Snapshot ``server`` (None or stopped: an empty report), optionally just model ``only``."""
        if server is None or not server.running:
            return cls(None, None, (), {})
        models = tuple(m for m in server.models() if only is None or m.name == only)
        urls = {m.name: {k: v for k, v in server.urls(m.name).items() if v} for m in models}
        return cls(server.grpc_address, server.rest_url, models, urls)

    def _ports(self) -> str:
        if self.grpc_address is None and self.rest_url is None:
            return "no server is running in this kernel: %nbserve start"
        return f"gRPC {self.grpc_address or 'off'} · REST {self.rest_url or 'off'}"

    def _repr_html_(self) -> str:
        parts = [f"<p><b>nbserve</b> {escape(self._ports())}</p>"]
        for model in self.models:
            items = "".join(
                f"<li>{escape(kind)}: <code style='user-select:all'>{escape(url)}</code></li>"
                for kind, url in self.urls[model.name].items()
            )
            parts.append(f"{model._repr_html_()}<ul style='margin-top:0'>{items}</ul>")
        return "".join(parts)

    def __repr__(self) -> str:
        lines = [f"nbserve {self._ports()}"]
        for model in self.models:
            source = f"{model.base_path} (policy {model.policy})" if model.base_path else "live only"
            lines.append(f"{model.name}: {source}")
            lines += [
                f"  version {v.version}: {v.state}" + (f" {v.error}" if v.error else "")
                for v in model.versions
            ]
            lines += [f"  label {label} -> {version}" for label, version in sorted(model.labels.items())]
            lines += [f"  {kind}: {url}" for kind, url in self.urls[model.name].items()]
        return "\n".join(lines)
