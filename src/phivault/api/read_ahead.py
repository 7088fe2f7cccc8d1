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
"""

from __future__ import annotations

import re

from starlette.types import Scope

from phivault.access.runtime import AccessControl
from phivault.fhir.resources import STORABLE_TYPES
from phivault.service import Service
from phivault.store.base import ReadAhead

SCOPE_KEY = "phivault.read_ahead"
_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")  # fhir/resources.py check_id


class ReadAheads:
    def __init__(self, access: AccessControl, service: Service, base_path: str) -> None:
        self._store = access.store
        self._codec = service.codec
        self._prefix = base_path.rstrip("/") + "/"

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


def taken(scope: Scope, rtype: str, rid: str) -> ReadAhead | None:
    """The read-ahead of this request, if it was made for rtype/rid (once)."""
    ahead = scope.pop(SCOPE_KEY, None)
    if isinstance(ahead, ReadAhead) and ahead.rtype == rtype and ahead.rid == rid:
        return ahead
    return None
