"""One pure-ASGI layer per request for both the access line and the metrics: one wrapper to
pay for, not two. It sits just inside TraceMiddleware, so the trace id is set.

The route label is the matched route's template, read from `scope["route"]` once the app
has run (the router sets it): never the raw path, whose ids would leak tenants and multiply
the series.
"""

from __future__ import annotations

from time import perf_counter

from sonarly_api.db import is_unavailable
from sonarly_api.ids import is_id
from sonarly_api.observability.logs import access_log
from sonarly_api.observability.metrics import UNMATCHED, RequestMetrics
from sonarly_api.tracing import ASGIApp, Message, Receive, Scope, Send


class ObservabilityMiddleware:
    def __init__(
        self, app: ASGIApp, metrics: RequestMetrics | None = None, log_access: bool = True
    ) -> None:
        self.app = app
        self._observe = metrics.observe if metrics is not None else None
        self._log_access = log_access

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or (self._observe is None and not self._log_access):
            await self.app(scope, receive, send)
            return
        status = 0

        async def send_and_note_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        started = perf_counter()
        try:
            await self.app(scope, receive, send_and_note_status)
        except Exception as exc:
            # TraceMiddleware, just outside, answers for it: the same choice as its renderer.
            if not status:
                status = 503 if is_unavailable(exc) else 500
            raise
        finally:
            # 0: cancelled before answering (server shutdown); nginx's 499 says the same.
            self._record(scope, status or 499, perf_counter() - started)

    def _record(self, scope: Scope, status: int, seconds: float) -> None:
        route = scope.get("route")
        template: str = getattr(route, "path_format", None) or UNMATCHED
        method: str = scope["method"]
        if self._observe is not None:
            self._observe(method, template, status, seconds)
        log = access_log() if self._log_access else None
        if log is None:
            return
        principal = scope["state"].get("principal") if "state" in scope else None
        group = (scope.get("path_params") or {}).get("accountGroupId")
        if group is not None:
            # Only a well-formed id: the parameter is whatever the client sent.
            group = group.lower()
            if not is_id(group):
                group = None
        key_id = principal.key_id if principal is not None else None
        log.write(method, template, status, seconds, key_id, group, _job_id(scope))


def _job_id(scope: Scope) -> str | None:
    """The prospecting job a request is about: its path's `jobId` (a well-formed one only),
    or the job a start request created (the endpoint puts it in the request state)."""
    job = (scope.get("path_params") or {}).get("jobId")
    if job is None and "state" in scope:
        job = scope["state"].get("job_id")
    if not isinstance(job, str):
        return None
    job = job.lower()
    return job if is_id(job) else None
