"""Export: models held in the kernel or saved to files, written as versions of a SavedModel base path."""

from nbserve.exporting.exporter import IMAGES_SIGNATURE, SignatureKind, export
from nbserve.exporting.result import ExportResult
from nbserve.exporting.versions import VersionExists, next_version

__all__ = ["IMAGES_SIGNATURE", "ExportResult", "SignatureKind", "VersionExists", "export", "next_version"]
