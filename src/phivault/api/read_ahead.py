"""A read by id on a networked store: the access epochs, the version and its data key in
one round trip.

On PostgreSQL a guarded read by id cost three round trips before its audit entry: the
access epochs (read where the token is checked, before the request is decided), the
current version, and its data key when the key ring had not cached it. Where the token
is checked (BearerAuth), a GET of `{base}/{type}/{id}` reads all three in one statement
(AccessStore.read_ahead) instead of the epochs alone, and the read handler takes the
version and the key from the request's scope.

Nothing is decided or released sooner: the epochs read after the request arrived still
refresh the access caches before the token is looked at, and Service.read still opens,
authorizes and audits the version as for any read; the version read is as fresh as one
made a moment later in the handler. A path of that shape that another route answers
(an AuditEvent read) just leaves its read-ahead unused. SQLite reads are local and
cheap, and are not read ahead.

When the request is sure to reach the read handler (`FhirRoutes.read`: the router's full
match for it, and a media type it accepts), the read itself runs in the same worker
thread, right after the token check (`ReadAheads.answer`), where it took a second hop to
a worker thread from the handler: the version opened, the access decided and the audit
entry queued as `Service.read` always does, and held (api/held.py). The handler only
awaits the entry's group commit and releases the answer, or the read's error, after it:
nothing is released before its audit entry is durable. A request no read handler answers
(another route's path, a 405, a 406) is never read early.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.types import Scope

from phivault.access.runtime import AccessControl
from phivault.api.held import Held, held
from phivault.api.http import check_accept
from phivault.api.routing import SegmentRouter
from phivault.errors import NotAcceptable
from phivault.fhir.resources import STORABLE_TYPES
from phivault.service import Context, Service, Version
from phivault.store.base import ReadAhead

SCOPE_KEY = "phivault.read_ahead"
ANSWER_KEY = "phivault.read_answer"
_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")  # fhir/resources.py check_id


class ReadAheads:
    def __init__(
        self,
        access: AccessControl,
        service: Service,
        base_path: str,
        router: SegmentRouter | None = None,
        read_endpoint: Callable[..., Any] | None = None,
    ) -> None:
        """With `router` and `read_endpoint` (the read handler), the reads the router
        hands to that handler are answered where they were read ahead (`answer`)."""
        self._store = access.store
        self._service = service
        self._codec = service.codec
        self._prefix = base_path.rstrip("/") + "/"
        self._router = router
        self._read_endpoint = read_endpoint

    def target(self, scope: Scope) -> tuple[str, str] | None:
        """(type, id) if the request is a read by id (by its method and path's shape)."""
        path: str = scope.get("path", "")
        if scope.get("method") != "GET" or not path.startswith(self._prefix):
            return None
        rtype, _, rid = path[len(self._prefix) :].partition("/")
        if rtype not in STORABLE_TYPES or not _ID.fullmatch(rid):
            return None
        return rtype, rid

    def read(self, rtype: str, rid: str) -> ReadAhead:
        return self._store.read_ahead(rtype, rid, self._codec.key_row_suffix())

    def answerable(self, scope: Scope, rtype: str, rid: str) -> bool:
        """Whether the request is the read of rtype/rid that the read handler answers:
        the router hands it to that handler with these path parameters, and the handler
        would not refuse its media type before reading."""
        if self._router is None or self._read_endpoint is None:
            return False
        found = self._router.full_match(scope)
        if found is None:
            return False
        route, child = found
        if getattr(route, "endpoint", None) != self._read_endpoint:
            return False
        if child.get("path_params") != {"rtype": rtype, "rid": rid}:
            return False
        try:
            check_accept(Request(scope))
        except NotAcceptable:
            return False
        return True

    def answer(self, scope: Scope, ctx: Context, ahead: ReadAhead) -> None:
        """Read ahead.rtype/ahead.rid for ctx now (blocking: in the worker thread of the
        token check), its answer held in the scope for the read handler (`answered`)."""
        service = self._service
        outcome = held(service.audit, lambda: service.read(ctx, ahead.rtype, ahead.rid, ahead))
        scope[ANSWER_KEY] = (ahead.rtype, ahead.rid, outcome)


def taken(scope: Scope, rtype: str, rid: str) -> ReadAhead | None:
    """The read-ahead of this request, if it was made for rtype/rid (once)."""
    ahead = scope.pop(SCOPE_KEY, None)
    if isinstance(ahead, ReadAhead) and ahead.rtype == rtype and ahead.rid == rid:
        return ahead
    return None


def answered(scope: Scope, rtype: str, rid: str) -> Held[Version] | None:
    """The read of rtype/rid already made for this request (`ReadAheads.answer`), held
    until its audit entry is durable (once)."""
    found = scope.pop(ANSWER_KEY, None)
    if isinstance(found, tuple) and found[:2] == (rtype, rid) and isinstance(found[2], Held):
        return found[2]
    return None
