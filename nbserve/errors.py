"""Typed serving errors, each carrying its TF/gRPC status code and HTTP status.

This is the one place where a failure is mapped to the wire: REST answers
``{"error": message}`` with ``http_status``; gRPC aborts with ``code``.
"""

from __future__ import annotations


class ServingError(Exception):
    """Base class. ``code`` is the TF status name (equal to the gRPC StatusCode name)."""

    code: str = "UNKNOWN"
    http_status: int = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class Cancelled(ServingError):
    code, http_status = "CANCELLED", 499


class Unknown(ServingError):
    code, http_status = "UNKNOWN", 500


class InvalidArgument(ServingError):
    code, http_status = "INVALID_ARGUMENT", 400


class DeadlineExceeded(ServingError):
    code, http_status = "DEADLINE_EXCEEDED", 504


class NotFound(ServingError):
    code, http_status = "NOT_FOUND", 404


class AlreadyExists(ServingError):
    code, http_status = "ALREADY_EXISTS", 409


class PermissionDenied(ServingError):
    code, http_status = "PERMISSION_DENIED", 403


class ResourceExhausted(ServingError):
    code, http_status = "RESOURCE_EXHAUSTED", 429


class FailedPrecondition(ServingError):
    code, http_status = "FAILED_PRECONDITION", 400


class Aborted(ServingError):
    code, http_status = "ABORTED", 409


class OutOfRange(ServingError):
    code, http_status = "OUT_OF_RANGE", 400


class Unimplemented(ServingError):
    code, http_status = "UNIMPLEMENTED", 501


class Internal(ServingError):
    code, http_status = "INTERNAL", 500


class Unavailable(ServingError):
    code, http_status = "UNAVAILABLE", 503


class DataLoss(ServingError):
    code, http_status = "DATA_LOSS", 500


class Unauthenticated(ServingError):
    code, http_status = "UNAUTHENTICATED", 401


_BY_CODE = {cls.code: cls for cls in ServingError.__subclasses__()}


def error_for_code(code: str, message: str) -> ServingError:
    """Build the error class for a TF status code name (e.g. from a StatusProto)."""
    return _BY_CODE.get(code, Unknown)(message)
