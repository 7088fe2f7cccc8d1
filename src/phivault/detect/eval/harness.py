"""The simulated clinic's server: a real data directory, the real ASGI app with access
control on, real users, logins and tokens, and a simulated clock threaded through the
audit log (entry times), the access layer (sessions, tokens, policy) and the detectors.

Requests go through the app in-process (Starlette's TestClient); the client's network
address, which the real server takes from the connection, is set per request by a thin
ASGI shim, since an in-process client has no socket.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from argon2 import PasswordHasher
from starlette.testclient import TestClient
from starlette.types import ASGIApp, Receive, Scope, Send

from phivault.access import clients
from phivault.access.care import StoreCareFacts
from phivault.access.runtime import AccessControl
from phivault.api.app import create_app
from phivault.crypto.kek import KeyFileKeySource, create_key_file
from phivault.detect.canaries import seed_canaries
from phivault.detect.eval.clinic import Clinic, Staff
from phivault.detect.model import format_instant
from phivault.errors import LoginFailed, PhivaultError
from phivault.service import Context
from phivault.store.access_sql import UserRow
from phivault.store.base import VersionRecord
from phivault.vault import Vault, init_data_dir, open_vault

_LIGHT_HASHER = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
ADDRESS_HEADER = "x-sim-address"
USER_SCOPE = "user/*.cruds"
SYSTEM_SCOPE = "system/*.cruds"
TOKEN_REFRESH_S = 240.0
IDLE_RELOGIN_S = 14 * 60.0


class SimClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def stamp(self) -> str:
        return format_instant(self.now)


class _AddressShim:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            for name, value in scope.get("headers", []):
                if name == ADDRESS_HEADER.encode():
                    scope = dict(scope, client=(value.decode(), 0))
        await self.app(scope, receive, send)


@dataclass
class Session:
    user_id: str
    session_id: str
    address: str
    token: str
    token_at: float
    last_used: float


def password_of(member: Staff, seed: int) -> str:
    words = random.Random(f"{seed}:{member.key}").sample(  # noqa: S311 (simulated users)
        [
            "harbor",
            "violet",
            "tundra",
            "marble",
            "quiver",
            "saddle",
            "lantern",
            "orbit",
            "pepper",
            "meadow",
        ],
        4,
    )
    return " ".join(words) + f" {seed}"


class Harness:
    def __init__(self, workdir: Path, clinic: Clinic, clock: SimClock, seed: int) -> None:
        self.clock = clock
        self.clinic = clinic
        self.seed = seed
        key = workdir / "sim.key"
        create_key_file(key)
        data = workdir / "data"
        init_data_dir(data, KeyFileKeySource(key))
        self.vault: Vault = open_vault(data, KeyFileKeySource(key))
        self.vault.audit.stamp = clock.stamp  # the clock hook: entries carry simulated time
        seed_canaries(self.vault, 3, rng=random.Random(seed))  # noqa: S311
        for _ in self.vault.service.import_resources(
            Context(actor="system:import"), clinic.resources
        ):
            pass
        self.access = AccessControl.for_service(self.vault.service, self.vault.keyring, clock=clock)
        vault = self.vault

        def opener(record: VersionRecord) -> bytes | None:
            return vault.service._open(record).body

        # Care facts are cached for a minute: of simulated time, like everything else.
        self.access.policy.care = StoreCareFacts(vault.store, opener, clock=clock)
        for member in clinic.staff:
            # The simulated staff's accounts, as `users.add` writes them but with a light
            # argon2id profile (same algorithm and login code path, lower cost): a
            # simulated week has hundreds of logins.
            member.user_id = str(uuid.uuid4())
            self.access.store.add_user(
                UserRow(
                    user_id=member.user_id,
                    username=member.key,
                    roles=member.role,
                    practitioner=member.practitioner,
                    password_hash=_LIGHT_HASHER.hash(password_of(member, seed)),
                    totp_secret=None,
                    totp_last_step=0,
                    mfa_required=0,
                    recovery_codes="[]",
                    disabled=0,
                    created=clock(),
                    updated=clock(),
                )
            )
        self.sessions: dict[str, Session] = {}
        self.client = TestClient(
            _AddressShim(create_app(vault.service, vault.settings, self.access)),
            base_url="http://sim.clinic",
            raise_server_exceptions=True,
        )
        self.client.__enter__()  # one event loop for the whole run

    def close(self) -> None:
        self.client.__exit__(None, None, None)
        self.vault.close()

    # -- logins and sessions ---------------------------------------------------------------------
    def login(self, username: str, password: str, address: str) -> Session | None:
        """A login through the real authenticator (audited); None when it fails."""
        try:
            user = self.access.login.login(username, password, "", address)
        except (LoginFailed, PhivaultError):
            return None
        row = self.access.sessions.open(user.user_id, None, USER_SCOPE, None)
        token, _ = self.access.user_token(row.session_id, user.user_id, None, USER_SCOPE)
        now = self.clock()
        session = Session(user.user_id, row.session_id, address, token, now, now)
        self.sessions[username] = session
        return session

    def session(self, member: Staff, address: str) -> Session:
        """The member's session at this address, logging in again after automatic logoff."""
        found = self.sessions.get(member.key)
        now = self.clock()
        if found is None or found.address != address or now - found.last_used > IDLE_RELOGIN_S:
            found = self.login(member.key, password_of(member, self.seed), address)
            assert found is not None, "a simulated user could not log in"
        if now - found.token_at > TOKEN_REFRESH_S:
            found.token, _ = self.access.user_token(
                found.session_id, found.user_id, None, USER_SCOPE
            )
            found.token_at = now
        found.last_used = now
        return found

    def system_token(self, name: str) -> str:
        row = self.access.store.client_by_name(name) or clients.register(
            self.access.store, name, clients.SCRIPT, SYSTEM_SCOPE
        )
        token, _ = self.access.system_token(row.client_id, SYSTEM_SCOPE, 3600)
        return token

    # -- requests ----------------------------------------------------------------------------------
    def request(
        self, token: str, address: str, method: str, path: str, body: dict[str, Any] | None = None
    ) -> tuple[int, Any]:
        headers = {
            "Authorization": f"Bearer {token}",
            ADDRESS_HEADER: address,
            "Accept": "application/fhir+json",
        }
        if body is not None:
            headers["Content-Type"] = "application/fhir+json"
        reply = self.client.request(method, f"/fhir/{path}", headers=headers, json=body)
        try:
            parsed = reply.json()
        except ValueError:
            parsed = None
        return reply.status_code, parsed

    def break_glass(self, member: Staff, address: str, reason: str) -> int:
        """Emergency access for the member's session (audited, and always reviewed)."""
        session = self.session(member, address)
        reply = self.client.post(
            "/oauth/break-glass",
            headers={"Authorization": f"Bearer {session.token}", ADDRESS_HEADER: address},
            data={"reason": reason},
        )
        return reply.status_code

    def as_user(
        self,
        member: Staff,
        address: str,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
    ) -> tuple[int, Any]:
        session = self.session(member, address)
        return self.request(session.token, address, method, path, body)
