"""SegmentRouter picks the route Starlette's plain Router would pick, for every path."""

from __future__ import annotations

import re
from typing import Any

from starlette.routing import BaseRoute, Match, Route, Router
from starlette.testclient import TestClient

from phivault.access.runtime import AccessControl
from phivault.api.app import create_app
from phivault.api.routing import SegmentRouter
from phivault.vault import Vault

METHODS = ("GET", "POST", "PUT", "DELETE", "PATCH")
ODD_PATHS = (
    "/",
    "/fhir",
    "/fhir/",
    "/fhir//",
    "/fhir/Patient",
    "/fhir/Patient/",
    "/fhir/patient/1",
    "/fhir/Patient/1",
    "/fhir/Patient/1/",
    "/fhir/Patient/1/_history",
    "/fhir/Patient/1/_history/2",
    "/fhir/Patient/1/_history/2/3",
    "/fhir/Patient/1/$everything",
    "/fhir/Patient/1/Observation",
    "/fhir/Patient/$export",
    "/fhir/Patient/_search",
    "/fhir/Patient/_history",
    "/fhir/$export",
    "/fhir/_history",
    "/fhir/_search",
    "/fhir/metadata",
    "/fhir/metadata/x",
    "/fhir/AuditEvent",
    "/fhir/AuditEvent/1",
    "/fhir/AuditEvent/1/2/3",
    "/fhir/Observation/a/b/c/d",
    "/fhir/.well-known/smart-configuration",
    "/openapi.json",
    "/audit/leaves",
    "/nothing/here",
)


def _chosen(routes: list[BaseRoute], method: str, path: str) -> BaseRoute | None:
    """The route Starlette's Router.app hands the request to: the first full match, else
    the first partial match (405), else none (404)."""
    scope: dict[str, Any] = {"type": "http", "method": method, "path": path, "root_path": ""}
    partial = None
    for route in routes:
        match, _ = route.matches(scope)
        if match is Match.FULL:
            return route
        if match is Match.PARTIAL and partial is None:
            partial = route
    return partial


def _paths_of(routes: list[BaseRoute]) -> set[str]:
    """Each route's own path with its parameters filled in, plus odd paths."""
    found = set(ODD_PATHS)
    for route in routes:
        if isinstance(route, Route):
            found.add(re.sub(r"\{[^}]+\}", "Patient", route.path))
            found.add(re.sub(r"\{[^}]+\}", "x1", route.path))
    return found


def test_the_same_route_as_the_plain_router(vault: Vault, access: AccessControl) -> None:
    app = create_app(vault.service, vault.settings, access)
    router = app.router
    assert isinstance(router, SegmentRouter)
    plain = Router(router.routes)
    checked = 0
    for path in sorted(_paths_of(router.routes)):
        for method in METHODS:
            expected = _chosen(plain.routes, method, path)
            assert _chosen(router.candidates(path), method, path) is expected, (method, path)
            checked += 1
    assert checked > 200


def _dispatched(router: SegmentRouter, method: str, path: str) -> BaseRoute | None:
    """The route SegmentRouter.app hands the request to."""
    scope: dict[str, Any] = {"type": "http", "method": method, "path": path, "root_path": ""}
    partial, partial_at = None, -1
    for position, route in router.ordered(path, method):
        match, _ = route.matches(scope)
        if match is Match.FULL:
            return route
        if match is Match.PARTIAL and (partial is None or position < partial_at):
            partial, partial_at = route, position
    return partial


def test_method_order_dispatches_as_the_plain_router(vault: Vault, access: AccessControl) -> None:
    router = create_app(vault.service, vault.settings, access).router
    assert isinstance(router, SegmentRouter)
    plain = Router(router.routes)
    checked = 0
    for path in sorted(_paths_of(router.routes)):
        for method in (*METHODS, "HEAD", "OPTIONS", "BREW"):
            expected = _chosen(plain.routes, method, path)
            assert _dispatched(router, method, path) is expected, (method, path)
            checked += 1
    assert checked > 300
    # A read by id tries its own route first.
    first = router.ordered("/fhir/Patient/1", "GET")[0][1]
    assert isinstance(first, Route) and "GET" in (first.methods or ())


def test_unknown_methods_share_one_cache_entry(vault: Vault, access: AccessControl) -> None:
    router = create_app(vault.service, vault.settings, access).router
    assert isinstance(router, SegmentRouter)
    for i in range(50):
        router.ordered("/fhir/Patient/1", f"X{i}")
    shapes = {shape for shape, _ in router._by_method}
    assert len(router._by_method) == len(shapes)


def test_full_match_names_the_route_the_router_hands_a_request_to(
    vault: Vault, access: AccessControl
) -> None:
    app = create_app(vault.service, vault.settings, access)
    router = app.router
    assert isinstance(router, SegmentRouter)
    checked = 0
    for path in sorted(_paths_of(router.routes)):
        for method in METHODS:
            scope = {"type": "http", "method": method, "path": path, "root_path": ""}
            chosen = _chosen(router.routes, method, path)
            found = router.full_match(scope)
            if chosen is None or chosen.matches(scope)[0] is not Match.FULL:
                assert found is None, (method, path)  # a 404 or a 405: no full match
                continue
            assert found is not None and found[0] is chosen, (method, path)
            assert found[1] == chosen.matches(scope)[1]
            checked += 1
    assert checked > 50


def test_a_route_with_a_path_parameter_stays_a_candidate() -> None:
    async def endpoint(request: Any) -> Any:
        raise AssertionError("not called")

    routes: list[BaseRoute] = [
        Route("/fhir/AuditEvent/{rest:path}", endpoint),
        Route("/fhir/{rtype}/{rid}", endpoint),
    ]
    router = SegmentRouter(routes)
    assert router.candidates("/fhir/AuditEvent/1/2/3") == [routes[0]]
    assert router.candidates("/fhir/Patient/1") == routes
    assert router.candidates("/other") == [routes[0]]


def test_not_found_and_wrong_method_answer_as_before(client: TestClient) -> None:
    missing = client.get("/fhir/Patient/1/2/3/4/5")
    assert missing.status_code == 404
    assert missing.json()["resourceType"] == "OperationOutcome"
    wrong = client.patch("/fhir/metadata")
    assert wrong.status_code == 405


def test_an_endpoint_error_still_reaches_its_handler(client: TestClient) -> None:
    # The endpoint runs without Starlette's inner exception layer: the ExceptionMiddleware
    # answers its errors with the same handlers.
    reply = client.get("/fhir/Patient/no-such-patient")
    assert reply.status_code == 404
    assert reply.json()["issue"][0]["code"] == "not-found"
    assert reply.headers["cache-control"] == "no-store"


def test_sync_and_async_endpoints_are_called_directly() -> None:
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse

    def sync_endpoint(request: Any) -> PlainTextResponse:
        return PlainTextResponse("sync " + request.path_params["x"])

    async def async_endpoint(request: Any) -> PlainTextResponse:
        return PlainTextResponse("async " + request.path_params["x"])

    app = Starlette()
    app.router = SegmentRouter([Route("/s/{x}", sync_endpoint), Route("/a/{x}", async_endpoint)])
    assert all(
        isinstance(r, Route) and r.app.__qualname__ == "_direct.<locals>.app"
        for r in app.router.routes
    )
    with TestClient(app) as test_client:
        assert test_client.get("/s/1").text == "sync 1"
        assert test_client.get("/a/2").text == "async 2"
        assert test_client.post("/a/2").status_code == 405
