"""Raw HTTP/1.1 over a socket (tests/edge/): requests no HTTP client library will send, and
the responses read back byte for byte."""

from __future__ import annotations

import contextlib
import json
import socket
from dataclasses import dataclass
from typing import Any


@dataclass
class RawResponse:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        values = [v for k, v in self.headers if k.lower() == name.lower()]
        return values[0] if values else None

    def json(self) -> Any:
        return json.loads(self.body)


def parse_response(raw: bytes) -> RawResponse:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = [(k.strip(), v.strip()) for k, _, v in (line.partition(":") for line in lines[1:])]
    length = next((int(v) for k, v in headers if k.lower() == "content-length"), None)
    return RawResponse(status, headers, body if length is None else body[:length])


def read_all(sock: socket.socket, timeout: float = 10.0) -> bytes:
    """Everything the server sends until it closes the connection (or `timeout`)."""
    sock.settimeout(timeout)
    chunks = []
    with contextlib.suppress(TimeoutError, ConnectionResetError):
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=10)


def send_raw(port: int, request: bytes, timeout: float = 10.0) -> RawResponse:
    """Send `request` as is, then read until the server closes (send `Connection: close`
    in the request, or expect the server to close)."""
    with connect(port) as sock:
        # The server may refuse and stop reading before the whole request is sent.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(request)
        return parse_response(read_all(sock, timeout))
