"""Authentication and the attack list: every forged, stale or misdirected token, every
scope escalation and every guessing attack is refused, audited, and leaks nothing."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import html
import json
import re
import secrets
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson
import pytest
from joserfc import jwt
from joserfc.jwk import ECKey, OKPKey
from starlette.testclient import TestClient

from phivault.access import clients, totp
from phivault.access.tokens import TokenSigner
from phivault.api.middleware.auth import CONTEXT_KEY, BearerAuth, _bearer
from phivault.service import Context
from phivault.vault import Vault
from tests.access.clinic import PASSWORD, Clinic, open_clinic


@pytest.fixture
def clinic(vault: Vault) -> Iterator[Clinic]:
    yield from open_clinic(vault)


def _audit(clinic: Clinic, since: int) -> list[dict[str, Any]]:
    store = clinic.vault.store
    return [orjson.loads(raw) for _, raw in store.audit_entries(since, store.audit_size())]


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


def _forged_tokens(clinic: Clinic, good: str) -> dict[str, str]:
    signer = clinic.access.signer
    keys = clinic.access.keys
    claims = signer.verify(good)
    keep = {k: claims[k] for k in ("sub", "sid", "scope", "ptype", "client_id")}
    header, payload, signature = good.split(".")
    body = json.loads(base64.urlsafe_b64decode(payload + "=="))
    body["sub"] = "someone-else"
    other = OKPKey.generate_key("Ed25519")
    other_claims = {**claims, "exp": int(time.time()) + 300}
    return {
        "expired": TokenSigner(
            keys, issuer=signer.issuer, audience=signer.audience, clock=lambda: time.time() - 3600
        ).issue(keep)[0],
        "wrong-audience": TokenSigner(keys, issuer=signer.issuer, audience="urn:other").issue(keep)[
            0
        ],
        "wrong-issuer": TokenSigner(keys, issuer="urn:other", audience=signer.audience).issue(keep)[
            0
        ],
        "alg-none": f"{_b64({'alg': 'none', 'typ': 'at+jwt'})}.{payload}.",
        "tampered": f"{header}.{_b64(body)}.{signature}",
        "other-key": jwt.encode(
            {"alg": "Ed25519", "typ": "at+jwt", "kid": signer.kid},
            other_claims,
            other,
            algorithms=["Ed25519"],
        ),
        "garbage": "not-a-token",
    }


def test_every_bad_token_gets_the_same_401(clinic: Clinic) -> None:
    user = clinic.add_user("clinician", practitioner=clinic.clinician_ref)
    good = clinic.token(user)
    cond = clinic.first("Condition", clinic.related)["id"]
    url = f"/fhir/Condition/{cond}"
    assert clinic.client.get(url, headers=clinic.headers(good)).status_code == 200
    since = clinic.vault.store.audit_size()
    bodies = set()
    cases = {"no-token": None, **_forged_tokens(clinic, good)}
    for name, token in cases.items():
        headers = {} if token is None else {"Authorization": f"Bearer {token}"}
        resp = clinic.client.get(url, headers=headers)
        assert resp.status_code == 401, name
        assert resp.headers["www-authenticate"].startswith("Bearer")
        assert resp.headers["cache-control"] == "no-store"
        bodies.add(resp.text)
    assert len(bodies) == 1  # the response never says which check failed
    assert "Condition" not in bodies.pop()
    denied = [e for e in _audit(clinic, since) if e["action"] == "authenticate"]
    assert len(denied) == len(cases)
    assert all(e["outcome"] == "4" for e in denied)


def test_metadata_is_public_and_headers_are_set(clinic: Clinic) -> None:
    resp = clinic.client.get("/fhir/metadata")
    assert resp.status_code == 200
    assert resp.headers["x-frame-options"] == "DENY"


def test_patient_scoped_token_cannot_reach_another_patient(clinic: Clinic) -> None:
    user = clinic.add_user("clinician", practitioner=clinic.clinician_ref)
    token = clinic.token(user, "patient/*.rs launch/patient", patient=clinic.related)
    headers = clinic.headers(token)
    mine = clinic.first("Condition", clinic.related)["id"]
    theirs = clinic.first("Condition", clinic.unrelated)["id"]
    assert clinic.client.get(f"/fhir/Condition/{mine}", headers=headers).status_code == 200
    assert clinic.client.get(f"/fhir/Patient/{clinic.related}", headers=headers).status_code == 200
    for url in (
        f"/fhir/Patient/{clinic.unrelated}",
        f"/fhir/Condition/{theirs}",
        f"/fhir/Condition/{theirs}/_history",
        f"/fhir/Condition/{theirs}/_history/1",
    ):
        resp = clinic.client.get(url, headers=headers)
        assert resp.status_code == 404, url
        # Exactly what a record that does not exist gets (only the id the caller sent).
        missing = url.replace(theirs, "0" * 8).replace(clinic.unrelated, "0" * 8)
        absent = clinic.client.get(missing, headers=headers)
        assert resp.text.replace(theirs, "0" * 8).replace(clinic.unrelated, "0" * 8) == absent.text
    # Read-only scope: no write, whatever the role would allow.
    body = clinic.client.get(f"/fhir/Condition/{mine}", headers=headers).content
    assert (
        clinic.client.put(f"/fhir/Condition/{mine}", content=body, headers=headers).status_code
        == 403
    )


def test_user_token_cannot_carry_system_scopes(clinic: Clinic) -> None:
    user = clinic.add_user("front-desk")
    token = clinic.token(user, "system/*.cruds")
    resp = clinic.client.get(f"/fhir/Patient/{clinic.related}", headers=clinic.headers(token))
    assert resp.status_code == 401


def test_revoked_and_idle_sessions_stop_at_once(clinic: Clinic) -> None:
    user = clinic.add_user("front-desk")
    token = clinic.token(user)
    url = f"/fhir/Patient/{clinic.related}"
    assert clinic.client.get(url, headers=clinic.headers(token)).status_code == 200
    assert clinic.access.sessions.revoke_user(user.user_id) == 1
    assert clinic.client.get(url, headers=clinic.headers(token)).status_code == 401
    token = clinic.token(user)
    real = clinic.access.sessions.clock
    clinic.access.sessions.clock = lambda: real() + 16 * 60  # past the idle timeout
    try:
        assert clinic.client.get(url, headers=clinic.headers(token)).status_code == 401
    finally:
        clinic.access.sessions.clock = real
    clinic.access.users.set_disabled(user.username)
    assert clinic.client.get(url, headers=clinic.headers(clinic.token(user))).status_code == 401


def test_break_glass(clinic: Clinic) -> None:
    doctor = clinic.add_user("clinician", practitioner=clinic.clinician_ref)
    token = clinic.token(doctor)
    headers = {"Authorization": f"Bearer {token}"}
    theirs = f"/fhir/Condition/{clinic.first('Condition', clinic.unrelated)['id']}"
    assert clinic.client.get(theirs, headers=headers).status_code == 404
    assert clinic.client.post("/oauth/break-glass", data={}, headers=headers).status_code == 403
    assert (
        clinic.client.post("/oauth/break-glass", data={"reason": "  "}, headers=headers).status_code
        == 403
    )
    clerk = clinic.add_user("front-desk")
    clerk_headers = {"Authorization": f"Bearer {clinic.token(clerk)}"}
    refused = clinic.client.post(
        "/oauth/break-glass", data={"reason": "patient collapsed in lobby"}, headers=clerk_headers
    )
    assert refused.status_code == 403
    assert clinic.client.post("/oauth/break-glass", data={"reason": "x"}).status_code == 401
    since = clinic.vault.store.audit_size()
    ok = clinic.client.post(
        "/oauth/break-glass", data={"reason": "unconscious in ER, no chart access"}, headers=headers
    )
    assert ok.status_code == 200
    assert ok.json()["break_glass_until"] - time.time() == pytest.approx(3600, abs=5)
    assert clinic.client.get(theirs, headers=headers).status_code == 200
    entries = _audit(clinic, since)
    assert entries[0]["action"] == "break-glass" and entries[0]["extra"] == {"alert": "break-glass"}
    assert entries[-1]["purpose"] == "ETREAT"


def test_brute_force_on_one_account_is_throttled(clinic: Clinic) -> None:
    _user, _ = clinic.access.users.add("victim", PASSWORD, ["nurse"], mfa_required=False)
    login = clinic.access.login
    # A stopped clock: each argon2id check takes long on a busy machine, and the backoff
    # (1 s, then 2 s, ...) must not run out between the attempts of this test.
    frozen = time.time()
    login.clock = lambda: frozen
    results = []
    for i in range(8):
        try:
            login.login("victim", f"wrong guess {i}", "", f"10.0.0.{i}")
            results.append("ok")
        except Exception as exc:
            results.append(type(exc).__name__)
    assert results[:5] == ["LoginFailed"] * 5
    assert "TooManyAttempts" in results[5:]
    with pytest.raises(Exception, match="too many attempts"):
        login.login("victim", PASSWORD, "", "10.9.9.9")  # even the right password waits
    entries = [e for e in _audit(clinic, 0) if e["action"] == "login"]
    assert len(entries) >= 8
    assert all(
        PASSWORD not in json.dumps(e) and "wrong guess" not in json.dumps(e) for e in entries
    )
    assert all("victim" not in json.dumps(e) for e in entries if e["outcome"] != "0")


def test_password_spraying_from_one_address_is_throttled(clinic: Clinic) -> None:
    login = clinic.access.login
    outcomes = []
    for i in range(40):
        try:
            login.login(f"user{i}", "Spring2026!Spring", "", "203.0.113.9")
        except Exception as exc:
            outcomes.append(type(exc).__name__)
    assert outcomes.count("LoginFailed") == 30
    assert outcomes.count("TooManyAttempts") == 10


def test_unknown_and_known_users_fail_alike(clinic: Clinic) -> None:
    clinic.access.users.add("known", PASSWORD, ["billing"])
    msgs = set()
    for name in ("known", "unknown"):
        try:
            clinic.access.login.login(name, "not the password at all", "123456", "198.51.100.1")
        except Exception as exc:
            msgs.add((type(exc).__name__, str(exc)))
    assert len(msgs) == 1


def _pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode()
    return verifier, challenge.rstrip("=")


def test_authorization_code_flow_with_pkce_totp_and_refresh_rotation(clinic: Clinic) -> None:
    _user, enrolment = clinic.access.users.add(
        "drflow", PASSWORD, ["clinician"], practitioner=clinic.clinician_ref
    )
    assert enrolment is not None
    app = clients.register(
        clinic.access.store, "test-app", clients.PUBLIC,
        "launch/patient patient/*.rs offline_access", redirect_uris=["http://app.example/cb"],
    )  # fmt: skip
    verifier, challenge = _pkce()
    params = {
        "response_type": "code", "client_id": app.client_id, "redirect_uri": "http://app.example/cb",
        "scope": "launch/patient patient/*.rs offline_access", "state": "s1",
        "code_challenge": challenge, "code_challenge_method": "S256", "aud": "x",
    }  # fmt: skip
    page = clinic.client.get("/oauth/authorize", params=params)
    assert page.status_code == 200 and "<form" in page.text
    params["csrf_token"] = _csrf_token(page.text)
    escalated = clinic.client.get("/oauth/authorize", params={**params, "scope": "user/*.cruds"})
    assert escalated.status_code == 400 and escalated.json()["error"] == "invalid_scope"
    plain = clinic.client.get(
        "/oauth/authorize", params={**params, "code_challenge_method": "plain"}
    )
    assert plain.status_code == 400
    secret = base64.b32decode(enrolment.secret_b32 + "=" * (-len(enrolment.secret_b32) % 8))
    form = {**params, "username": "drflow", "password": PASSWORD, "patient": clinic.related}
    bad = clinic.client.post(
        "/oauth/authorize", data={**form, "otp": "000000"}, follow_redirects=False
    )
    assert bad.status_code == 401
    form["otp"] = totp.totp(secret, time.time())
    resp = clinic.client.post("/oauth/authorize", data=form, follow_redirects=False)
    assert resp.status_code == 303
    query = parse_qs(urlsplit(resp.headers["location"]).query)
    assert query["state"] == ["s1"]
    code = query["code"][0]
    token_form = {
        "grant_type": "authorization_code", "code": code, "client_id": app.client_id,
        "redirect_uri": "http://app.example/cb", "code_verifier": "wrong" * 10,
    }  # fmt: skip
    assert clinic.client.post("/oauth/token", data=token_form).json()["error"] == "invalid_grant"
    token_form["code_verifier"] = verifier
    # The code was used up by the failed attempt: codes work once, even when refused.
    assert clinic.client.post("/oauth/token", data=token_form).status_code == 400
    # A second, correct round trip.
    form["otp"] = totp.totp(secret, time.time() + 30)  # next time step (replay guard)
    resp = clinic.client.post("/oauth/authorize", data=form, follow_redirects=False)
    token_form["code"] = parse_qs(urlsplit(resp.headers["location"]).query)["code"][0]
    issued = clinic.client.post("/oauth/token", data=token_form)
    assert issued.status_code == 200, issued.text
    body = issued.json()
    assert body["patient"] == clinic.related and body["expires_in"] <= 900
    headers = {"Authorization": f"Bearer {body['access_token']}"}
    mine = clinic.first("Condition", clinic.related)["id"]
    assert clinic.client.get(f"/fhir/Condition/{mine}", headers=headers).status_code == 200
    refresh = {
        "grant_type": "refresh_token",
        "refresh_token": body["refresh_token"],
        "client_id": app.client_id,
    }
    wider = clinic.client.post("/oauth/token", data={**refresh, "scope": "patient/*.cruds"})
    assert wider.status_code == 400  # escalation; and the refresh token is now used up
    # Reuse of a used refresh token revokes the whole session.
    assert clinic.client.post("/oauth/token", data=refresh).status_code == 400
    assert clinic.client.get(f"/fhir/Condition/{mine}", headers=headers).status_code == 401


def _csrf_token(page: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert match, "the login form carries no CSRF token"
    return html.unescape(match.group(1))


def _login_app(clinic: Clinic) -> tuple[Any, dict[str, str]]:
    app = clients.register(
        clinic.access.store, "csrf-app", clients.PUBLIC, "launch/patient patient/*.rs",
        redirect_uris=["https://app.example/cb"],
    )  # fmt: skip
    _verifier, challenge = _pkce()
    params = {
        "response_type": "code", "client_id": app.client_id, "redirect_uri": "https://app.example/cb",
        "scope": "patient/*.rs", "state": "s", "code_challenge": challenge,
        "code_challenge_method": "S256", "aud": "x",
    }  # fmt: skip
    return app, params


def test_login_form_refuses_a_post_without_its_csrf_token(clinic: Clinic) -> None:
    clinic.access.users.add("drcsrf", PASSWORD, ["clinician"], mfa_required=False)
    _app, params = _login_app(clinic)
    page = clinic.client.get("/oauth/authorize", params=params)
    assert page.status_code == 200
    # Clickjacking: the page may not be framed, and may submit only here (and to the app).
    assert page.headers["x-frame-options"] == "DENY"
    policy = page.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in policy
    assert "form-action 'self' https://app.example" in policy
    assert "phivault_login=" in page.headers["set-cookie"]
    assert "samesite=strict" in page.headers["set-cookie"].lower()
    assert "httponly" in page.headers["set-cookie"].lower()
    token = _csrf_token(page.text)
    login = {**params, "username": "drcsrf", "password": PASSWORD}
    since = clinic.vault.store.audit_size()

    def post(form: dict[str, str], **kw: Any) -> Any:
        return clinic.client.post("/oauth/authorize", data=form, follow_redirects=False, **kw)

    assert post(login).status_code == 403  # no token at all
    assert post({**login, "csrf_token": "1." + "A" * 43}).status_code == 403  # made up
    # The token is bound to this authorization request: another redirect target, PKCE
    # challenge or scope with it is refused.
    for name, value in (
        ("state", "other"),
        ("code_challenge", "B" * 43),
        ("scope", "launch/patient patient/*.rs"),
    ):
        assert post({**login, "csrf_token": token, name: value}).status_code == 403
    # A cross-site POST: the browser does not send the SameSite=Strict cookie.
    with TestClient(clinic.client.app, base_url="http://testserver") as elsewhere:
        forged = elsewhere.post(
            "/oauth/authorize", data={**login, "csrf_token": token}, follow_redirects=False
        )
        assert forged.status_code == 403
    refused = [e for e in _audit(clinic, since) if e.get("detail") == "CsrfRejected"]
    assert len(refused) == 6
    # Refused before the password was looked at: no login attempt was recorded or counted.
    logins = [e for e in _audit(clinic, since) if e["action"] == "login"]
    assert all(e.get("detail") == "CsrfRejected" for e in logins)
    # The form as the server showed it, from the browser it was shown to: signed in.
    ok = post({**login, "csrf_token": token})
    assert ok.status_code == 303, ok.text
    assert ok.headers["location"].startswith("https://app.example/cb?code=")


def test_login_form_tokens_expire(clinic: Clinic) -> None:
    clinic.access.users.add("drlate", PASSWORD, ["clinician"], mfa_required=False)
    _app, params = _login_app(clinic)
    login = {**params, "username": "drlate", "password": PASSWORD}
    routes_csrf = next(
        r.endpoint.__self__.csrf  # type: ignore[union-attr]
        for r in clinic.client.app.routes  # type: ignore[attr-defined]
        if getattr(r, "path", "") == "/oauth/authorize"
    )
    real = routes_csrf._clock
    routes_csrf._clock = lambda: real() - 11 * 60  # the form was shown 11 minutes ago
    try:
        token = _csrf_token(clinic.client.get("/oauth/authorize", params=params).text)
    finally:
        routes_csrf._clock = real
    late = clinic.client.post(
        "/oauth/authorize", data={**login, "csrf_token": token}, follow_redirects=False
    )
    assert late.status_code == 403
    fresh = _csrf_token(late.text)  # the refusal page carries a new form
    ok = clinic.client.post(
        "/oauth/authorize", data={**login, "csrf_token": fresh}, follow_redirects=False
    )
    assert ok.status_code == 303


def test_backend_services_client_credentials(clinic: Clinic) -> None:
    key = ECKey.generate_key("P-384", parameters={"kid": "k1"})
    app = clients.register(
        clinic.access.store, "lab-feed", clients.BACKEND, "system/*.rs",
        jwks={"keys": [key.as_dict(private=False)]},
    )  # fmt: skip
    token_url = "http://testserver/oauth/token"

    def assertion(**over: Any) -> str:
        claims = {
            "iss": app.client_id, "sub": app.client_id, "aud": token_url,
            "exp": int(time.time()) + 240, "jti": secrets.token_hex(8), **over,
        }  # fmt: skip
        return jwt.encode({"alg": "ES384", "kid": "k1"}, claims, key, algorithms=["ES384"])

    form = {
        "grant_type": "client_credentials", "scope": "system/*.rs",
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
    }  # fmt: skip
    signed = assertion()
    resp = clinic.client.post("/oauth/token", data={**form, "client_assertion": signed})
    assert resp.status_code == 200, resp.text
    token = resp.json()["access_token"]
    replay = clinic.client.post("/oauth/token", data={**form, "client_assertion": signed})
    assert replay.status_code == 401 and replay.json()["error"] == "invalid_client"
    wrong_aud = clinic.client.post(
        "/oauth/token", data={**form, "client_assertion": assertion(aud="x")}
    )
    assert wrong_aud.status_code == 401
    escalate = clinic.client.post(
        "/oauth/token", data={**form, "scope": "system/*.cruds", "client_assertion": assertion()}
    )
    assert escalate.json()["error"] == "invalid_scope"
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/fhir+json"}
    mine = clinic.first("Condition", clinic.related)
    assert clinic.client.get(f"/fhir/Condition/{mine['id']}", headers=headers).status_code == 200
    body = orjson.dumps({k: v for k, v in mine.items() if k != "meta"})
    assert (
        clinic.client.put(
            f"/fhir/Condition/{mine['id']}", content=body, headers=headers
        ).status_code
        == 403
    )
    assert clinic.client.get("/oauth/jwks").json()["keys"][0]["crv"] == "Ed25519"
    config = clinic.client.get("/.well-known/smart-configuration").json()
    assert config["code_challenge_methods_supported"] == ["S256"]
    clinic.client.post("/oauth/revoke", data={"token": "whatever"})


@pytest.mark.parametrize(
    ("header", "token"),
    [
        (b"Bearer abc.def.ghi", "abc.def.ghi"),
        (b"bearer abc", "abc"),
        (b"BEARER  abc \t", "abc"),
        (b"Bearer", None),
        (b"Bearer \t ", None),
        (b"Basic YWxhZGRpbjpvcGVuc2VzYW1l", None),
        (b"Bearer\tabc", None),
    ],
)
def test_the_bearer_token_is_read_from_the_first_authorization_header(
    header: bytes, token: str | None
) -> None:
    later = (b"authorization", b"Bearer later")
    scope = {"headers": [(b"host", b"x"), (b"authorization", header), later]}
    assert _bearer(scope) == token
    assert _bearer({"headers": [(b"host", b"x")]}) is None


def _capturing(found: list[Context]) -> Any:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        found.append(scope[CONTEXT_KEY])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    return app


def _from(address: str, url: str, token: str) -> dict[str, Any]:
    return {
        "type": "http",
        "method": "GET",
        "path": url,
        "headers": [(b"authorization", f"Bearer {token}".encode())],
        "client": (address, 50000),
    }


async def _call(auth: BearerAuth, scope: dict[str, Any]) -> None:
    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        return None

    await auth(scope, receive, send)


def test_a_token_seen_again_keeps_its_context_per_address(clinic: Clinic) -> None:
    """The Context of a cached principal is made once per address; a revocation (a new
    principal after the full check) or break-glass (its purpose ends with time) never
    reuses an older one."""
    doctor = clinic.add_user("clinician", practitioner=clinic.clinician_ref)
    token = clinic.token(doctor)
    found: list[Context] = []
    auth = BearerAuth(_capturing(found), clinic.access, "/fhir")
    url = f"/fhir/Patient/{clinic.related}"

    async def run(*addresses: str) -> None:
        for address in addresses:
            await _call(auth, _from(address, url, token))

    asyncio.run(run("10.0.0.1", "10.0.0.1", "10.0.0.2"))
    first, again, elsewhere = found
    assert again is first
    assert (first.actor, first.client, first.purpose) == (doctor.user_id, "10.0.0.1", "TREAT")
    assert elsewhere is not first and elsewhere.client == "10.0.0.2"
    assert elsewhere.principal is first.principal

    # Break-glass changes the session (the auth epoch): a new principal, whose purpose
    # of use depends on the time, so its Context is made for every request.
    assert first.principal is not None and first.principal.session_id is not None
    until = clinic.access.sessions.start_break_glass(first.principal.session_id, "cardiac arrest")
    found.clear()
    asyncio.run(run("10.0.0.1", "10.0.0.1"))
    urgent, urgent_again = found
    assert urgent.principal is not first.principal
    assert urgent.purpose == urgent_again.purpose == "ETREAT"
    assert urgent_again is not urgent
    real = clinic.access.clock
    clinic.access.clock = lambda: until + 1  # break-glass over; the token still valid
    try:
        found.clear()
        asyncio.run(run("10.0.0.1"))
        assert found[0].purpose == "TREAT"
    finally:
        clinic.access.clock = real

    # Revoked: refused, although a Context for this token and address was kept.
    assert clinic.access.sessions.revoke_user(doctor.user_id) == 1
    found.clear()
    asyncio.run(run("10.0.0.1"))
    assert found == []


def test_a_system_token_acts_without_a_purpose_of_use(clinic: Clinic) -> None:
    row = clients.register(clinic.access.store, "ctx-script", clients.SCRIPT, "system/*.rs")
    token, _ = clinic.access.system_token(row.client_id, "system/*.rs")
    found: list[Context] = []
    auth = BearerAuth(_capturing(found), clinic.access, "/fhir")
    url = f"/fhir/Patient/{clinic.related}"

    async def run() -> None:
        await _call(auth, _from("10.0.0.9", url, token))
        await _call(auth, _from("10.0.0.9", url, token))

    asyncio.run(run())
    assert found[0] is found[1]
    assert (found[0].actor, found[0].purpose) == (row.client_id, None)
