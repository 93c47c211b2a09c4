"""The HTTP edge of `sonarly-api serve`, as only a real server shows it: request heads bounded
in size, count and time, a connection cap, the parser's refusals and ambiguous requests
answered in the envelope with a trace id, an access line and a metric."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import PEPPER, Factory, bearer
from tests.observability.conftest import samples
from tests.rawhttp import RawResponse, connect, parse_response, read_all, send_raw
from tests.servers import Server, free_port, running, serve_argv, service_env

HEADER_TIMEOUT = 2  # seconds
MAX_CONNECTIONS = 20


@pytest.fixture(scope="module")
def server(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    env = service_env(
        DATABASE_URL=database_url,
        API_KEY_PEPPER=PEPPER,
        LOG_FORMAT="json",
        METRICS="open",
        DEMO_DATA="false",
        RATE_LIMIT="100000/minute",
        AUTH_FAILURE_RATE_LIMIT="100000/minute",
        HTTP_HEADER_TIMEOUT_SECONDS=str(HEADER_TIMEOUT),
        HTTP_MAX_CONNECTIONS=str(MAX_CONNECTIONS),
    )
    port = free_port()
    log = tmp_path_factory.mktemp("edge") / "server.log"
    with running(serve_argv(port), env, log, port) as server:
        yield server


def get(path: str, *headers: str, version: str = "1.1") -> bytes:
    lines = [f"GET {path} HTTP/{version}", *headers, "Connection: close", "", ""]
    return "\r\n".join(lines).encode()


def assert_envelope(response: RawResponse, status: int, code: str) -> dict[str, Any]:
    assert response.status == status, response
    assert response.header("content-type") == "application/json"
    body: dict[str, Any] = response.json()
    assert body["success"] is False
    assert body["data"] is None
    assert body["error"]["code"] == code
    assert body["traceId"] == response.header("x-trace-id")
    assert len(body["traceId"]) == 32
    return body


def access_lines(server: Server, trace_id: str) -> list[dict[str, Any]]:
    lines = []
    for line in server.output().splitlines():
        if trace_id in line and '"event":"request"' in line:
            lines.append(json.loads(line))
    return lines


def wait_for_access_line(server: Server, trace_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        lines = access_lines(server, trace_id)
        if lines:
            return lines[0]
        time.sleep(0.05)
    raise AssertionError(f"no access line for {trace_id}")


def requests_with_status(server: Server, status: int) -> float:
    exposition = httpx.get(f"{server.url}/metrics", timeout=10).text
    return sum(
        value
        for (name, labels), value in samples(exposition).items()
        if name == "sonarly_http_requests_total" and ("status", str(status)) in labels
    )


class TestRequestHead:
    def test_a_megabyte_header_is_431_in_the_envelope_logged_and_counted(
        self, server: Server
    ) -> None:
        before = requests_with_status(server, 431)
        response = send_raw(server.port, get("/healthz", "Host: x", "X-Big: " + "a" * 1_000_000))
        body = assert_envelope(response, 431, "HEADERS_TOO_LARGE")
        assert body["error"]["details"] == "The request head must be at most 32768 bytes."
        line = wait_for_access_line(server, body["traceId"])
        assert line["status"] == 431
        assert line["method"] == "GET"
        assert requests_with_status(server, 431) == before + 1

    def test_a_head_just_under_the_bound_is_served(self, server: Server) -> None:
        headers = [f"X-Pad-{i}: " + "p" * 1000 for i in range(30)]  # ~31 KB
        response = send_raw(server.port, get("/healthz", "Host: x", *headers))
        assert response.status == 200
        assert response.json()["data"] == {"status": "ok"}

    def test_more_than_100_headers_is_431(self, server: Server) -> None:
        headers = [f"X-H{i}: 1" for i in range(101)]
        response = send_raw(server.port, get("/healthz", "Host: x", *headers))
        body = assert_envelope(response, 431, "HEADERS_TOO_LARGE")
        assert body["error"]["details"] == "At most 100 headers are accepted."

    def test_a_huge_header_does_not_hold_up_other_clients(self, server: Server) -> None:
        stop = threading.Event()
        sent = [0]

        def flood() -> None:
            # Sends a header without end until refused: the server must stop reading it.
            with connect(server.port) as sock:
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ")
                try:
                    while not stop.is_set() and sent[0] < 96_000_000:
                        sock.sendall(b"a" * 65536)
                        sent[0] += 65536
                except OSError:
                    return  # refused and closed: what is expected

        flooder = threading.Thread(target=flood)
        flooder.start()
        try:
            for _ in range(5):
                # It took up to 8 s while a 96 MB header was being read.
                response = httpx.get(f"{server.url}/healthz", timeout=3)
                assert response.status_code == 200
        finally:
            stop.set()
            flooder.join(30)
        # Refused long before 96 MB: the kernel's buffers hold a few MB at most.
        assert sent[0] < 16_000_000

    def test_a_64_kb_url_is_414(self, server: Server) -> None:
        response = send_raw(server.port, get("/healthz?" + "q" * 65536, "Host: x"))
        body = assert_envelope(response, 414, "URI_TOO_LONG")
        assert body["error"]["details"] == "The request line must be at most 8192 bytes."
        assert wait_for_access_line(server, body["traceId"])["status"] == 414


class TestParserRefusals:
    def test_an_invalid_byte_in_a_header_is_400(self, server: Server) -> None:
        before = requests_with_status(server, 400)
        response = send_raw(server.port, get("/healthz", "Host: x", "X-Bad: a\x01b"))
        body = assert_envelope(response, 400, "VALIDATION_ERROR")
        assert body["error"]["details"] == "The request is not valid HTTP/1.1."
        assert wait_for_access_line(server, body["traceId"])["status"] == 400
        assert requests_with_status(server, 400) >= before + 1

    def test_a_raw_invalid_byte_in_the_url_is_400(self, server: Server) -> None:
        request = b"GET /healthz\xff HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        body = assert_envelope(send_raw(server.port, request), 400, "VALIDATION_ERROR")
        assert body["error"]["details"] == "The request is not valid HTTP/1.1."

    def test_content_length_with_transfer_encoding_is_400(self, server: Server) -> None:
        request = (
            b"POST /v1/accounts HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
            b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n0\r\n\r\n"
        )
        body = assert_envelope(send_raw(server.port, request), 400, "VALIDATION_ERROR")
        assert body["error"]["details"] == (
            "Content-Length and Transfer-Encoding must not both be sent."
        )


class TestAmbiguousRequests:
    def test_two_host_headers(self, server: Server) -> None:
        response = send_raw(server.port, get("/healthz", "Host: a", "Host: b"))
        body = assert_envelope(response, 400, "VALIDATION_ERROR")
        assert body["error"]["details"] == "The request has 2 Host headers; send exactly one."

    def test_no_host_on_http_1_1(self, server: Server) -> None:
        body = assert_envelope(send_raw(server.port, get("/healthz")), 400, "VALIDATION_ERROR")
        assert body["error"]["details"] == "An HTTP/1.1 request must have a Host header."

    def test_no_host_on_http_1_0_is_fine(self, server: Server) -> None:
        assert send_raw(server.port, get("/healthz", version="1.0")).status == 200

    async def test_two_authorization_headers(self, server: Server, factory: Factory) -> None:
        group = await factory.group()
        _, key = await factory.key([group])
        path = f"/v1/accounts/{group}/prospects/by-provider-id/p1"
        auth = "Authorization: " + bearer(key)["Authorization"]
        assert send_raw(server.port, get(path, "Host: x", auth)).status == 200
        response = send_raw(server.port, get(path, "Host: x", auth, auth))
        body = assert_envelope(response, 400, "VALIDATION_ERROR")
        assert body["error"]["details"] == (
            "The request has 2 Authorization headers; send exactly one."
        )


class TestUnfinishedRequests:
    def test_a_partial_head_is_408_after_the_header_timeout(self, server: Server) -> None:
        with connect(server.port) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            started = time.monotonic()
            raw = read_all(sock, timeout=HEADER_TIMEOUT + 10)
            waited = time.monotonic() - started
        body = assert_envelope(parse_response(raw), 408, "REQUEST_TIMEOUT")
        assert body["error"]["details"] == (
            f"The request head must arrive within {HEADER_TIMEOUT} s of its start."
        )
        assert HEADER_TIMEOUT - 0.5 <= waited < HEADER_TIMEOUT + 5
        assert wait_for_access_line(server, body["traceId"])["status"] == 408

    def test_a_silent_connection_is_closed_after_the_header_timeout(self, server: Server) -> None:
        with connect(server.port) as sock:
            started = time.monotonic()
            assert read_all(sock, timeout=HEADER_TIMEOUT + 10) == b""  # closed, no answer
            # Closed by the server, not left open until read_all gave up.
            assert time.monotonic() - started < HEADER_TIMEOUT + 5

    def test_connections_over_the_cap_are_503_and_the_server_recovers(self, server: Server) -> None:
        held: list[socket.socket] = []
        try:
            for _ in range(MAX_CONNECTIONS):
                sock = connect(server.port)
                sock.sendall(b"GET /heal")  # unfinished: held until the header timeout
                held.append(sock)
            time.sleep(0.2)
            response = send_raw(server.port, get("/healthz", "Host: x"))
            body = assert_envelope(response, 503, "SERVICE_UNAVAILABLE")
            assert response.header("retry-after") == "1"
            assert "too many open connections" in body["error"]["details"]
        finally:
            for sock in held:
                sock.close()
        deadline = time.monotonic() + 10
        while send_raw(server.port, get("/healthz", "Host: x")).status != 200:
            assert time.monotonic() < deadline, "the server did not recover"
            time.sleep(0.1)
        assert "refusing connections" in server.output()


def test_an_invalid_chunk_in_a_body_is_400(server: Server) -> None:
    request = (
        b"POST /v1/accounts HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"zz\r\nnot a chunk\r\n0\r\n\r\n"
    )
    body = assert_envelope(send_raw(server.port, request), 400, "VALIDATION_ERROR")
    assert body["error"]["details"] == "The request is not valid HTTP/1.1."


@pytest.mark.parametrize(
    ("max_connections", "printed"),
    [
        ("500", "None 574"),  # 500 connections + 10 pooled (DB_POOL_SIZE) + 64 others: raised
        (
            "5000",
            "HTTP_MAX_CONNECTIONS=5000 needs about 5074 open files per worker, and the "
            "limit is 2048 (ulimit -n): lower HTTP_MAX_CONNECTIONS or raise the limit 2048",
        ),
    ],
)
def test_serve_makes_room_for_its_connections(max_connections: str, printed: str) -> None:
    script = (
        "import resource\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (256, 2048))\n"
        "from sonarly_api.edge.protocol import ensure_descriptors\n"
        "print(ensure_descriptors(), resource.getrlimit(resource.RLIMIT_NOFILE)[0])\n"
    )
    env = service_env(HTTP_MAX_CONNECTIONS=max_connections)
    out = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.startswith(printed), out
