"""Helpers shared by test modules (fixtures stay in conftest.py)."""

from __future__ import annotations

import contextlib
import json
import socket
import urllib.parse
from dataclasses import dataclass
from typing import Any

import httpx
from sqlalchemy import select, text, update
from sqlalchemy.ext.asyncio import AsyncEngine

from sonarly_api.credits import service as credits
from sonarly_api.credits.schemas import CreditsView
from sonarly_api.prospecting.models import ProspectingJob
from tests.conftest import Factory, bearer

# --- Batch lookup (tests/prospects/) ----------------------------------------------------------

BATCH_PATH = "/v1/accounts/{group}/prospects/by-provider-id"
ENVELOPE_HEAD = b'{"success":true,"data":'
ENVELOPE_TAIL = b',"error":null,"traceId":"'


def batch_url(group: str) -> str:
    return BATCH_PATH.format(group=group)


def single_url(group: str, provider_id: str) -> str:
    """The single lookup's path for any provider id. Dots too are escaped: clients (httpx
    among them) remove "." and ".." segments before sending; the server decodes %2E."""
    encoded = urllib.parse.quote(provider_id, safe="").replace(".", "%2E")
    return f"/v1/accounts/{group}/prospects/by-provider-id/{encoded}"


async def post_batch(
    http: httpx.AsyncClient, group: str, provider_ids: list[Any], key: str | None
) -> httpx.Response:
    """POST the batch lookup with `{"providerIds": provider_ids}` (any JSON values)."""
    headers = {"Content-Type": "application/json"}
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    body = json.dumps({"providerIds": provider_ids}, ensure_ascii=False).encode()
    return await http.post(batch_url(group), content=body, headers=headers)


def data_bytes(response: httpx.Response) -> bytes:
    """The bytes of a 200 envelope's `data`, exactly as sent."""
    body = response.content
    assert body.startswith(ENVELOPE_HEAD), body[:100]
    end = body.rindex(ENVELOPE_TAIL)
    return body[len(ENVELOPE_HEAD) : end]


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """The envelope of an error answer: status, code, trace id; returns `error`."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["success"] is False
    assert body["data"] is None
    assert body["error"]["code"] == code
    assert body["error"]["message"]
    assert body["traceId"] == response.headers["x-trace-id"]
    error: dict[str, Any] = body["error"]
    return error


# --- Prospecting jobs (tests/prospecting/) ---------------------------------------------------

JOB_PERMISSIONS = ("prospecting:read", "prospecting:write")
SEARCH_URL = "https://www.linkedin.com/search/results/people/?keywords=cto"


@dataclass(frozen=True)
class Tenant:
    """An account group with a plan and credits, and a key granted it."""

    group: str
    key_id: str
    key: str

    @property
    def headers(self) -> dict[str, str]:
        return bearer(self.key)

    @property
    def jobs(self) -> str:
        return jobs_path(self.group)


def jobs_path(group: str) -> str:
    return f"/v1/accounts/{group}/prospecting"


def job_path(group: str, job_id: str) -> str:
    return f"{jobs_path(group)}/{job_id}"


def cancel_path(group: str, job_id: str) -> str:
    return f"{job_path(group, job_id)}/cancel"


def search_body(**fields: Any) -> dict[str, Any]:
    return {"source": "linkedin_search", "searchUrl": SEARCH_URL, **fields}


async def set_plan(engine: AsyncEngine, group: str, plan: str) -> None:
    async with engine.begin() as conn:
        await conn.execute(
            text("UPDATE account_groups SET plan = :plan WHERE id = :g"), {"plan": plan, "g": group}
        )


async def grant(engine: AsyncEngine, group: str, amount: int) -> None:
    async with engine.begin() as conn:
        await credits.grant(conn, group, amount, note="test")


async def credits_view(engine: AsyncEngine, group: str) -> CreditsView:
    async with engine.begin() as conn:
        return await credits.show(conn, group, limit=100)


async def tenant(
    factory: Factory,
    *,
    plan: str = "starter",
    credits: int = 100_000,
    permissions: tuple[str, ...] = JOB_PERMISSIONS,
) -> Tenant:
    group = await factory.group()
    await set_plan(factory.engine, group, plan)
    if credits:
        await grant(factory.engine, group, credits)
    key_id, key = await factory.key([group], permissions)
    return Tenant(group, key_id, key)


async def start(
    client: httpx.AsyncClient,
    who: Tenant,
    body: dict[str, Any] | None = None,
    idempotency_key: str | None = None,
) -> httpx.Response:
    headers = dict(who.headers)
    if idempotency_key is not None:
        headers["Idempotency-Key"] = idempotency_key
    return await client.post(
        who.jobs, json=search_body() if body is None else body, headers=headers
    )


async def started_job(client: httpx.AsyncClient, who: Tenant, **fields: Any) -> str:
    response = await start(client, who, search_body(**fields))
    assert response.status_code == 202, response.text
    job_id: str = response.json()["data"]["jobId"]
    return job_id


async def set_job(engine: AsyncEngine, job_id: str, **values: Any) -> None:
    """Moves a job as a worker would (the worker's code is another branch's)."""
    async with engine.begin() as conn:
        await conn.execute(
            update(ProspectingJob).where(ProspectingJob.id == job_id).values(**values)
        )


async def job_row(engine: AsyncEngine, job_id: str) -> dict[str, Any]:
    async with engine.connect() as conn:
        row = (await conn.execute(select(ProspectingJob).where(ProspectingJob.id == job_id))).one()
    return dict(row._mapping)


async def count_jobs(engine: AsyncEngine, group: str) -> int:
    async with engine.connect() as conn:
        value = await conn.scalar(
            text("SELECT count(*) FROM prospecting_jobs WHERE account_group_id = :g"), {"g": group}
        )
    return int(value or 0)


# --- Raw HTTP/1.1 over a socket (tests/edge/): requests no HTTP client library will send ----


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
