"""Test helpers shared by several test modules (fixtures stay in conftest.py)."""

from __future__ import annotations

import json
import urllib.parse
from typing import Any

import httpx

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
