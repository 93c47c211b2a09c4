"""The hot path's routing: DirectRoute (no per-request dependency solving) and FastLane
(served without the framework's middleware layers).

DirectRoute is an APIRoute without FastAPI's per-request dependency solver.

The route is declared like any other — typed parameters, `Depends(...)`, response models — so
the OpenAPI document is generated from its signature as usual. Only the per-request work
changes: instead of `solve_dependencies` (which validates every parameter through Pydantic and
walks the dependency graph on each request; ~12% of the lookup's CPU in the py-spy profile
of docs/performance.md), a plan computed once at start-up calls the dependencies and the
endpoint directly.

The plan covers what the lookup needs and nothing more: plain `str` path parameters, the
`Request`, and `async def` dependencies (no `yield`) that themselves take only the `Request`.
A route outside that shape, or a FastAPI without the private name the plan reads, is refused
at start-up (when the route is declared) rather than served with different semantics.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

import fastapi
from fastapi import routing as fastapi_routing
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, APIRouter
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from sonarly_api.edge.paths import keep_invalid_bytes
from sonarly_api.errors import AppError

Handler = Callable[[Request], Coroutine[Any, Any, Response]]

_CONTEXT_VAR = "_effective_route_context_var"


@dataclass(frozen=True)
class _Plan:
    request_param: str | None
    path_params: tuple[tuple[str, str], ...]  # (keyword, name in the URL template)
    dependencies: tuple[tuple[str, Callable[[Request], Awaitable[Any]]], ...]


def _only_request(dependant: Dependant) -> bool:
    other_inputs = (
        dependant.path_params,
        dependant.query_params,
        dependant.header_params,
        dependant.cookie_params,
        dependant.body_params,
        dependant.dependencies,
    )
    return dependant.request_param_name is not None and not any(other_inputs)


def _plan(dependant: Dependant, path: str) -> _Plan:
    unsupported = (
        dependant.query_params,
        dependant.header_params,
        dependant.cookie_params,
        dependant.body_params,
    )
    if any(unsupported) or dependant.response_param_name or dependant.background_tasks_param_name:
        raise TypeError(f"{path}: DirectRoute takes only path parameters, Request, Depends")
    path_params = []
    for field in dependant.path_params:
        if field.field_info.annotation is not str or field.field_info.metadata:
            raise TypeError(f"{path}: DirectRoute path parameter {field.name} must be plain str")
        path_params.append((field.name, field.alias))
    dependencies = []
    for sub in dependant.dependencies:
        if sub.name is None or sub.call is None or not _only_request(sub):
            raise TypeError(f"{path}: DirectRoute dependencies must take only the Request")
        if not _plain_coroutine_function(sub.call):
            # Awaited directly: a sync function's result would be awaited, and a `yield`
            # dependency's clean-up would never run. FastAPI would serve both: refuse here.
            raise TypeError(
                f"{path}: DirectRoute dependency {sub.name} must be an `async def` without `yield`"
            )
        dependencies.append((sub.name, sub.call))
    return _Plan(dependant.request_param_name, tuple(path_params), tuple(dependencies))


def _plain_coroutine_function(call: Callable[..., Any]) -> bool:
    """An `async def` (not a sync function, not a generator, not an async generator)."""
    function = inspect.unwrap(call)
    while isinstance(function, functools.partial):
        function = function.func
    return inspect.iscoroutinefunction(function)


def _require_fastapi_internals() -> None:
    # The name is private: FastAPI may drop or rename it in any release. The versions are
    # pinned in pyproject.toml; this makes an unpinned install fail at start-up, not per
    # request (without it, router-level dependencies would be silently skipped).
    if not hasattr(fastapi_routing, _CONTEXT_VAR):
        raise RuntimeError(
            f"fastapi {fastapi.__version__} has no fastapi.routing.{_CONTEXT_VAR}, which the "
            "lookup's fast lane reads (sonarly_api/routing.py): install the FastAPI version "
            "pyproject.toml pins"
        )


def _effective_dependant(route: APIRoute) -> Dependant:
    # Under include_router, FastAPI builds the handler with a combined dependant (router-level
    # dependencies included) published in a context variable; honour it when present.
    _require_fastapi_internals()
    context = getattr(fastapi_routing, _CONTEXT_VAR).get()
    if context is not None and getattr(context, "original_route", None) is route:
        dependant: Dependant = context.dependant
        return dependant
    return route.dependant


class DirectRoute(APIRoute):
    # The handler built for the route as the app includes it (set by get_route_handler).
    direct_handler: Handler

    def get_route_handler(self) -> Handler:
        plan = _plan(_effective_dependant(self), self.path)
        endpoint = self.endpoint
        if not _plain_coroutine_function(endpoint):
            raise TypeError(f"{self.path}: a DirectRoute endpoint must be an `async def`")

        async def handler(request: Request) -> Response:
            kwargs: dict[str, Any] = {}
            for name, call in plan.dependencies:
                kwargs[name] = await call(request)
            path_values = request.path_params
            for name, alias in plan.path_params:
                kwargs[name] = path_values[alias]
            if plan.request_param is not None:
                kwargs[plan.request_param] = request
            response: Response = await endpoint(**kwargs)
            return response

        self.direct_handler = handler
        return handler


class FastLane:
    """Pure ASGI, the outermost layer: GET (and HEAD) requests for DirectRoutes go down `lane`, the
    app's own middleware (trace id, access log, metrics) around `DirectServer`; everything
    else — other methods (405), other routes — goes down the framework's usual stack.

    The lane skips the framework's layers outside the user middleware (ServerErrorMiddleware,
    FastAPI's exception telemetry and body limit) and inside it (ExceptionMiddleware, the
    router, which in this FastAPI version walks included-router contexts per request, and
    the per-route AsyncExitStacks). Those layers cost about a fifth of a lookup's CPU in the
    py-spy profile of docs/performance.md, and a DirectRoute needs none of them: it reads no
    body, has no dependency with `yield`, every error it raises is an AppError rendered by the
    same renderer the exception handlers use, and anything unexpected is answered by
    TraceMiddleware, the lane's outermost layer, as on the usual stack.
    """

    def __init__(self, app: ASGIApp, lane: ASGIApp, routes: list[DirectRoute]) -> None:
        self.app = app
        self._lane = lane
        self._routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # HEAD too: the request guard, in the lane's middleware, serves it as GET.
        if scope["type"] == "http" and scope["method"] in ("GET", "HEAD"):
            keep_invalid_bytes(scope)  # matched as the request guard will see it
            path = scope["path"]
            for route in self._routes:
                match = route.path_regex.match(path)
                if match is not None:
                    # What the router would have set: the access log and metrics read both.
                    scope["route"] = route
                    scope["path_params"] = {
                        name: route.param_convertors[name].convert(value)
                        for name, value in match.groupdict().items()
                    }
                    await self._lane(scope, receive, send)
                    return
        await self.app(scope, receive, send)


class DirectServer:
    """The innermost app of the lane: runs the DirectRoute FastLane matched."""

    def __init__(self, render_error: Callable[[Any], Response]) -> None:
        self._render_error = render_error

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route: DirectRoute = scope["route"]
        try:
            response = await route.direct_handler(Request(scope, receive, send))
        except AppError as exc:
            response = self._render_error(exc)
        await response(scope, receive, send)


def with_fast_lane(
    stack: ASGIApp,
    user_middleware: Sequence[Middleware],
    routes: list[DirectRoute],
    render_error: Callable[[Any], Response],
) -> ASGIApp:
    """`stack`, the framework's middleware stack, behind a FastLane whose lane is the same
    user middleware around a DirectServer."""
    lane: ASGIApp = DirectServer(render_error)
    for cls, args, kwargs in reversed(user_middleware):
        lane = cls(lane, *args, **kwargs)
    return FastLane(stack, lane, routes)


def check_fast_lane(app_router: APIRouter, routes: list[DirectRoute]) -> None:
    """At start-up: refuse dependencies the lane would not run. A DirectRoute's handler is
    built with the dependencies it was declared with (its router's included); those added by
    `FastAPI(dependencies=...)` or `include_router(..., dependencies=...)` join only when
    FastAPI builds the included route for the framework's stack."""
    if app_router.dependencies:
        raise TypeError("the fast lane does not run app-level dependencies")
    lane = set(map(id, routes))

    def walk(router: Any) -> None:
        for entry in router.routes:
            included = getattr(entry, "original_router", None)
            if included is None:
                continue
            if any(id(r) in lane for r in included.routes) and entry.include_context.dependencies:
                raise TypeError(
                    "the fast lane does not run include_router(..., dependencies=...): "
                    "declare them on the router of its routes"
                )
            walk(included)

    walk(app_router)


def direct_routes(router: APIRouter) -> list[DirectRoute]:
    """The router's GET DirectRoutes: FastLane matches paths only, and serves only GETs (a
    GET on the path of a POST DirectRoute must get the router's 405)."""
    return [
        route
        for route in router.routes
        if isinstance(route, DirectRoute) and "GET" in (route.methods or ())
    ]
