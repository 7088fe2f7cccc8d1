"""The access layer wired together for one data directory: users, login, sessions,
clients, token signing and the policy. Built once per process (`AccessControl.create`).

Tokens name this installation, not a URL: `iss` is `urn:phivault:<key id>` and `aud`
that plus `:fhir`, so they verify in every worker and behind any proxy, and a token from
another installation (another key) never does.

Caches (verified tokens, care relationships, consents) are checked against the store's
access epochs once per request (`refresh`; on the event loop one check covers the requests
already waiting when it is made, api/middleware/auth.py): a write that changes an access
decision, in any process, empties them before the next request is decided.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from phivault.access.care import Opener, StoreCareFacts
from phivault.access.clients import SCRIPT
from phivault.access.keys import AccessKeys, KeySource
from phivault.access.login import Authenticator
from phivault.access.policy import Policy, PolicySettings
from phivault.access.principal import SYSTEM, USER, Principal
from phivault.access.scopes import parse_scopes
from phivault.access.sessions import TOUCH_EVERY, SessionManager, SessionPolicy
from phivault.access.token_cache import CachedPrincipal, TokenCache
from phivault.access.tokens import TokenSigner
from phivault.access.users import UserDirectory
from phivault.audit.events import AuditSink
from phivault.errors import InvalidToken
from phivault.store.access_sql import AccessStore
from phivault.store.base import ReadView, Store, VersionRecord


class _Opened(Protocol):
    @property
    def body(self) -> bytes | None: ...


class ServiceLike(Protocol):
    store: Store
    audit: AuditSink

    def _open(self, record: VersionRecord) -> _Opened: ...


PURPOSE_TREATMENT = "TREAT"
PURPOSE_EMERGENCY = "ETREAT"  # HL7 v3 PurposeOfUse: emergency treatment (break-glass)


@dataclass
class AccessControl:
    store: AccessStore
    keys: AccessKeys
    users: UserDirectory
    login: Authenticator
    sessions: SessionManager
    signer: TokenSigner
    policy: Policy
    audit: AuditSink
    care: StoreCareFacts
    clock: Callable[[], float] = time.time
    tokens: TokenCache = field(default_factory=TokenCache)
    _epochs: dict[str, int] | None = field(default=None, repr=False)
    _epoch_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def create(
        cls,
        store: Store,
        keyring: KeySource,
        audit: AuditSink,
        opener: Opener,
        *,
        session_policy: SessionPolicy | None = None,
        policy_settings: PolicySettings | None = None,
        token_lifetime: int = 5 * 60,
        clock: Callable[[], float] = time.time,
    ) -> AccessControl:
        access_store = AccessStore(store)
        keys = AccessKeys.from_keyring(keyring)
        users = UserDirectory(access_store, keys)
        view: ReadView = store
        issuer = f"urn:phivault:{keys.key_id}"
        care = StoreCareFacts(view, opener)
        return cls(
            store=access_store,
            keys=keys,
            users=users,
            login=Authenticator(users, audit, clock=clock),
            sessions=SessionManager(access_store, keys, session_policy, clock=clock),
            signer=TokenSigner(
                keys,
                issuer=issuer,
                audience=issuer + ":fhir",
                lifetime=token_lifetime,
                clock=clock,
            ),
            policy=Policy(care, policy_settings, clock=clock),
            audit=audit,
            care=care,
            clock=clock,
        )

    @classmethod
    def for_service(cls, service: ServiceLike, keyring: KeySource, **options: Any) -> AccessControl:
        """Access control for a service: the policy reads care facts through it."""

        def opener(record: VersionRecord) -> bytes | None:
            return service._open(record).body

        return cls.create(service.store, keyring, service.audit, opener, **options)

    # -- caches ----------------------------------------------------------------------------------
    def refresh(self, epochs: dict[str, int] | None = None) -> None:
        """Empty the caches whose store epoch moved since the last look (one small read,
        unless the caller read `epochs` itself, after the request arrived, along with
        other reads: AccessStore.read_ahead). Called before every request is decided, by
        it or, on the event loop, for it since it arrived; see the module docstring."""
        seen = self.store.epochs() if epochs is None else epochs
        with self._epoch_lock:
            before, self._epochs = self._epochs, seen
        if before is None or before.get("care") != seen.get("care"):
            self.care.forget()
        if before is None or before.get("auth") != seen.get("auth"):
            self.tokens.clear()

    def cached(self, token: str, *, refresh: bool = True) -> Principal | None:
        """The principal of a token verified before, if still valid (no signature check,
        no session read); None: call `authenticate`. `refresh=False` only where the caches
        were refreshed after this request arrived (api/middleware/auth.py `_EpochTurn`)."""
        if refresh:
            self.refresh()
        return self.tokens.get(token, self.clock())

    def authenticate(self, token: str, epochs: dict[str, int] | None = None) -> Principal:
        """Refresh the caches (with `epochs` if the caller read them: see `refresh`), then
        the principal of `token` (cached, or checked in full)."""
        self.refresh(epochs)
        return self.tokens.get(token, self.clock()) or self.principal(token)

    # -- tokens ------------------------------------------------------------------------------------
    def principal(self, token: str) -> Principal:
        """The caller a bearer token stands for, checked against the live session, user
        and client (a revoked session, disabled user or disabled client stops at once).
        The result is cached for the token's lifetime (access/token_cache.py)."""
        generation = self.tokens.generation  # before any read: see TokenCache.put
        now = self.clock()
        claims = self.signer.verify(token)
        exp = float(claims["exp"])
        scopes, _ = parse_scopes(str(claims.get("scope", "")))
        client_id = claims.get("client_id")
        if client_id is not None and not isinstance(client_id, str):
            raise InvalidToken()
        if claims.get("ptype") == SYSTEM:
            client = self.store.client(str(claims["sub"]))
            if client is None or client.disabled or client_id != client.client_id:
                raise InvalidToken()
            if any(s.context != SYSTEM for s in scopes):
                raise InvalidToken()
            system = Principal(
                subject=client.client_id,
                kind=SYSTEM,
                scopes=scopes,
                client_id=client.client_id,
                token_id=str(claims["jti"]),
            )
            self.tokens.put(token, CachedPrincipal(system, exp, None), generation)
            return system
        sid = claims.get("sid")
        if not isinstance(sid, str):
            raise InvalidToken()
        session = self.sessions.check(sid)
        user = self.users.get(session.user_id)
        if user is None or user.disabled or user.user_id != claims["sub"]:
            raise InvalidToken()
        if any(s.context == SYSTEM for s in scopes):
            raise InvalidToken()  # a user token never carries system scopes
        person = Principal(
            subject=user.user_id,
            kind=USER,
            roles=user.roles,
            scopes=scopes,
            client_id=client_id,
            patient=session.patient,
            practitioner=user.practitioner,
            session_id=session.session_id,
            break_glass_until=session.break_glass_until,
            token_id=str(claims["jti"]),
        )
        # sessions.check recorded the request as last_seen if the old one was stale.
        touched = now if now - session.last_seen >= TOUCH_EVERY else session.last_seen
        entry = CachedPrincipal(person, min(exp, session.expires), touched)
        self.tokens.put(token, entry, generation)
        return person

    def purpose(self, principal: Principal) -> str | None:
        if principal.kind == SYSTEM:
            return None
        if principal.is_clinical and principal.break_glass_active(self.clock()):
            return PURPOSE_EMERGENCY
        return PURPOSE_TREATMENT

    def user_token(
        self, session_id: str, user_id: str, client_id: str | None, scope: str
    ) -> tuple[str, int]:
        return self.signer.issue(
            {
                "sub": user_id,
                "sid": session_id,
                "client_id": client_id,
                "scope": scope,
                "ptype": USER,
            }
        )

    def system_token(
        self, client_id: str, scope: str, lifetime: int | None = None
    ) -> tuple[str, int]:
        scopes, _ = parse_scopes(scope)
        if any(s.context != SYSTEM for s in scopes):
            raise InvalidToken()
        return self.signer.issue(
            {"sub": client_id, "client_id": client_id, "scope": scope, "ptype": SYSTEM},
            lifetime,
        )


__all__ = ["SCRIPT", "AccessControl"]
