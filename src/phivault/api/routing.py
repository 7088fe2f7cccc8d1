"""Route dispatch that tries only the routes a path could match.

Starlette's Router tries every route's regular expression in order, for every request:
with the FHIR API's ~45 routes a read of `Patient/{id}` (one of the last) paid for some
45 regex matches and scope lookups before its handler ran. `SegmentRouter` narrows the
list first, by the path's shape: its segment count and, at each position where some
route has a literal segment (`fhir`, `_history`, `$everything`, ...), whether the
request's segment is that literal. The routes left keep their order, and Starlette's own
matching then runs on them unchanged (first full match wins; a method mismatch is a
partial match, answered 405), so the answer is the one the plain Router would give.

Each route's handler is also called without the second exception-handling layer
Starlette's `request_response` puts around every endpoint: the ExceptionMiddleware below
the user middleware already turns every exception into its handler's response, with the
same handlers, so the inner layer (a closure and a send wrapper per request) answered
nothing the outer one does not.

A route whose path has a `{name:path}` parameter (any number of segments), and anything
that is not a plain Route, stays a candidate for every path. Requests no candidate
matches (404s, trailing-slash redirects) and non-HTTP scopes go to the plain Router.
The shapes are bounded by the routes' literals, so the cache of shapes is too. Within a
shape, the routes that allow the request's method are tried first (a read by id does not
try the update and delete routes of its path before its own); the others can only match
partially, and the first of those in route order answers 405, as before.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from starlette._utils import get_route_path, is_async_callable
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Match, Route, Router
from starlette.types import ASGIApp, Receive, Scope, Send

_Shape = tuple[str | None, ...]


def _segments(path: str) -> list[str]:
    return path.split("/")


# Starlette wraps a function endpoint in this closure (starlette.routing.request_response).
_STARLETTE_WRAPPER = "request_response.<locals>.app"


def _direct(endpoint: Callable[[Request], Any]) -> ASGIApp:
    """The endpoint as an ASGI app, exceptions left to the ExceptionMiddleware."""
    is_async = is_async_callable(endpoint)

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive, send)
        if is_async:
            response: Response = await endpoint(request)
        else:  # as starlette's request_response: a plain function runs in a worker thread
            response = await run_in_threadpool(endpoint, request)
        await response(scope, receive, send)

    return app


class _Template:
    """One route's path as segments: a literal, or None where a parameter goes."""

    def __init__(self, route: BaseRoute) -> None:
        self.route = route
        self.any_path = True
        self.parts: list[str | None] = []
        if isinstance(route, Route) and ":path}" not in route.path:
            self.any_path = False
            self.parts = [None if "{" in s else s for s in _segments(route.path)]

    def fits(self, shape: _Shape) -> bool:
        if self.any_path:
            return True
        if len(self.parts) != len(shape):
            return False
        return all(
            part is None or part == seen for part, seen in zip(self.parts, shape, strict=True)
        )


class SegmentRouter(Router):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for route in self.routes:
            if isinstance(route, Route) and _qualname(route.app) == _STARLETTE_WRAPPER:
                route.app = _direct(route.endpoint)
        self._templates = [_Template(route) for route in self.routes]
        self._literals: dict[int, set[str]] = {}
        for template in self._templates:
            for position, part in enumerate(template.parts):
                if part is not None:
                    self._literals.setdefault(position, set()).add(part)
        self._by_shape: dict[_Shape, list[BaseRoute]] = {}
        self._by_method: dict[tuple[_Shape, str | None], list[tuple[int, BaseRoute]]] = {}
        self._methods = {m for r in self.routes if isinstance(r, Route) for m in r.methods or ()}

    def candidates(self, path: str) -> list[BaseRoute]:
        """The routes `path` could match, in their order."""
        return self._for_shape(self._shape(path))

    def ordered(self, path: str, method: str) -> list[tuple[int, BaseRoute]]:
        """`candidates(path)` with their positions, those that allow `method` first (in
        their order), then those that could only match partially (a 405): a read by id
        then tries its own route first, not the update and delete routes of its path."""
        shape = self._shape(path)
        # Any method no route names is ordered alike: the key stays bounded.
        known = method if method in self._methods else None
        found = self._by_method.get((shape, known))
        if found is None:
            numbered = list(enumerate(self._for_shape(shape)))
            first = [(i, r) for i, r in numbered if _may_allow(r, method)]
            found = first + [(i, r) for i, r in numbered if not _may_allow(r, method)]
            self._by_method[(shape, known)] = found
        return found

    def _shape(self, path: str) -> _Shape:
        literals = self._literals
        empty: set[str] = set()
        return tuple(
            s if s in literals.get(i, empty) else None for i, s in enumerate(_segments(path))
        )

    def _for_shape(self, shape: _Shape) -> list[BaseRoute]:
        found = self._by_shape.get(shape)
        if found is None:
            found = [t.route for t in self._templates if t.fits(shape)]
            self._by_shape[shape] = found
        return found

    def full_match(self, scope: Scope) -> tuple[BaseRoute, Scope] | None:
        """The route `app` would hand the HTTP request `scope` to on a full match, with
        its child scope (path parameters), without handling it; None for any other
        answer (a 405, a redirect, a 404)."""
        for _, route in self.ordered(get_route_path(scope), scope["method"]):
            match, child_scope = route.matches(scope)
            if match is Match.FULL:  # those that may match fully come first, in order
                return route, child_scope
        return None

    async def app(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await super().app(scope, receive, send)
            return
        if "router" not in scope:
            scope["router"] = self
        partial: BaseRoute | None = None
        partial_at = -1
        partial_scope: Scope = {}
        for position, route in self.ordered(get_route_path(scope), scope["method"]):
            match, child_scope = route.matches(scope)
            if match is Match.FULL:  # routes that may match fully come first, in order
                scope["route"] = route
                scope.update(child_scope)
                await route.handle(scope, receive, send)
                return
            if match is Match.PARTIAL and (partial is None or position < partial_at):
                partial, partial_at, partial_scope = route, position, child_scope
        if partial is not None:  # e.g. the path exists but not for this method: 405
            scope["route"] = partial
            scope.update(partial_scope)
            await partial.handle(scope, receive, send)
            return
        await super().app(scope, receive, send)  # not found: redirects and the 404


def _may_allow(route: BaseRoute, method: str) -> bool:
    """False for a Route whose methods exclude `method`: it can match only partially."""
    return not isinstance(route, Route) or route.methods is None or method in route.methods


def _qualname(app: object) -> str:
    return str(getattr(app, "__qualname__", ""))
