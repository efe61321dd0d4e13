"""What an export wrote: the version, its path and its signatures, shown as a table."""

from __future__ import annotations

from dataclasses import dataclass

from nbserve.codecs.dtypes import data_type_name
from nbserve.signature import Signature, TensorInfo
from nbserve.tables import html_table, text_table

__all__ = ["ExportResult", "signature_rows"]

_HEADER = ("signature", "inputs", "outputs", "method")


def _tensor(alias: str, info: TensorInfo) -> str:
    shape = "unknown rank" if info.shape is None else "[" + ", ".join(map(str, info.shape)) + "]"
    return f"{alias}: {data_type_name(info.dtype)} {shape}"


def signature_rows(signatures: dict[str, Signature]) -> list[list[str | list[str]]]:
    """One row per signature: name, inputs and outputs (``alias: DT_FLOAT [-1, 8, 8, 1]``), method."""
    return [
        [
            key,
            [_tensor(a, i) for a, i in sig.inputs.items()],
            [_tensor(a, i) for a, i in sig.outputs.items()],
            sig.method_name,
        ]
        for key, sig in signatures.items()
    ]


@dataclass(frozen=True)
class ExportResult:
    """A version written by ``nbserve.export``."""

    name: str
    version: int
    path: str
    base_path: str
    signatures: dict[str, Signature]
    probed: bool

    def _title(self) -> str:
        checked = "loaded back and probed" if self.probed else "not probed"
        return f"Exported {self.name} version {self.version} to {self.path} ({checked})"

    def __repr__(self) -> str:
        return self._title() + "\n" + text_table(_HEADER, signature_rows(self.signatures))

    def _repr_html_(self) -> str:
        return html_table(_HEADER, signature_rows(self.signatures), caption=self._title())
