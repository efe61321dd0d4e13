"""Request size limits: the REST body (raw and after gzip) and the defaults of the size flags."""

from __future__ import annotations

import zlib

from nbserve.errors import InvalidArgument, ResourceExhausted

DEFAULT_MAX_BODY_BYTES = 256 * 2**20  # above TF's 100 MiB gzip budget, below what a kernel can hold twice
DEFAULT_GRPC_MAX_MESSAGE_BYTES = 2**31 - 1  # TF Serving's INT32_MAX
DEFAULT_MAX_INSTANCES = 10_000_000
BODY_FLAG = "--rest_api_max_body_bytes"


class PayloadTooLarge(ResourceExhausted):
    """RESOURCE_EXHAUSTED, answered over REST as 413."""

    http_status = 413


def too_large(size: int | str, limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"Request body of {size} bytes is larger than the server's limit of {limit} bytes; "
        f"send smaller batches or raise {BODY_FLAG}"
    )


class BodyReader:
    """Collects a streamed request body, refusing it once it passes ``limit`` bytes (before and after
    gzip decoding, so a small gzip bomb is refused too)."""

    def __init__(self, limit: int, content_encoding: str | None) -> None:
        self.limit = limit
        self.gzip = (content_encoding or "").strip().lower() == "gzip"
        self._chunks: list[bytes] = []
        self._size = 0

    def check_length(self, content_length: str | None) -> None:
        if content_length is not None and content_length.isdigit() and int(content_length) > self.limit:
            raise too_large(content_length, self.limit)

    def feed(self, chunk: bytes) -> None:
        self._size += len(chunk)
        if self._size > self.limit:
            raise too_large(f"more than {self.limit}", self.limit)
        self._chunks.append(chunk)

    def body(self) -> bytes:
        """The body, gzip-decoded when sent with ``Content-Encoding: gzip``."""
        raw = b"".join(self._chunks)
        if not self.gzip:
            return raw
        inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        try:
            body = inflater.decompress(raw, self.limit + 1)
        except zlib.error as error:
            raise InvalidArgument(
                f"The body was sent with Content-Encoding: gzip but is not valid gzip ({error}); "
                "compress it with gzip or drop the header"
            ) from None
        if len(body) > self.limit or inflater.unconsumed_tail:
            raise too_large(f"more than {self.limit} (after gzip decoding)", self.limit)
        if not inflater.eof:
            raise InvalidArgument("The gzip body is truncated; send the whole compressed stream")
        return body
