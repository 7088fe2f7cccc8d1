"""SMART App Launch 2 and Backend Services endpoints, outside the FHIR base path.

/.well-known/smart-configuration, /oauth/authorize (authorization code + PKCE S256 through
a small server-rendered login page: password + TOTP; protected against cross-site request
forgery by access/csrf.py, and never framed), /oauth/token (authorization_code,
refresh_token with rotation, client_credentials with private_key_jwt), /oauth/revoke
(RFC 7009), /oauth/jwks, and /oauth/break-glass (emergency access for the caller's
session: clinical roles only, reason required, time-boxed, audited as an alert).
"""

from __future__ import annotations

import base64
import functools
import html
import json
from importlib import resources
from string import Template
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from anyio import to_thread
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from phivault.access import clients, csrf
from phivault.access.runtime import AccessControl
from phivault.access.scopes import SYSTEM, check_within, parse_scopes
from phivault.access.tokens import verify_client_assertion
from phivault.api.middleware.auth import CONTEXT_KEY
from phivault.audit.events import MINOR_FAILURE, SUCCESS, AccessEvent
from phivault.errors import (
    BreakGlassRefused,
    InvalidClient,
    InvalidGrant,
    InvalidScope,
    InvalidToken,
    LoginFailed,
    OAuthError,
    PhivaultError,
    TooManyAttempts,
    UnsupportedGrantType,
)
from phivault.service import Context

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
_AUTHORIZE_PARAMS = (
    "response_type", "client_id", "redirect_uri", "scope", "state", "aud",
    "code_challenge", "code_challenge_method",
)  # fmt: skip


@functools.cache
def _login_template() -> Template:
    text = (resources.files("phivault") / "data" / "login.html").read_text("utf-8")
    return Template(text)


MAX_FORM_BYTES = 64 * 1024


async def _form(request: Request) -> dict[str, str]:
    """An application/x-www-form-urlencoded body (RFC 6749 requires this media type),
    bounded in size; a repeated parameter is refused, as RFC 6749 section 3.1 requires."""
    ctype = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    raw = b""
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_FORM_BYTES:
            raise OAuthError("the request is too large")
    if not raw:
        return {}
    if ctype != "application/x-www-form-urlencoded":
        raise OAuthError("send the parameters as application/x-www-form-urlencoded")
    pairs = parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True)
    found: dict[str, str] = {}
    for key, value in pairs:
        if key in found:
            raise OAuthError("a parameter was repeated")
        found[key] = value
    return found


def _oauth_error(exc: OAuthError | PhivaultError) -> JSONResponse:
    code = exc.oauth_error if isinstance(exc, OAuthError) else "invalid_request"
    status = exc.http_status if exc.http_status in (400, 401, 429) else 400
    return JSONResponse(
        {"error": code, "error_description": exc.message}, status_code=status, headers=_NO_STORE
    )


class OAuthRoutes:
    def __init__(self, access: AccessControl, fhir_base_path: str) -> None:
        self.access = access
        self.fhir_base_path = fhir_base_path
        self.csrf = csrf.LoginCsrf(access.keys, clock=access.clock)

    def routes(self) -> list[Route]:
        return [
            Route("/.well-known/smart-configuration", self.smart_configuration, methods=["GET"]),
            Route(
                f"{self.fhir_base_path}/.well-known/smart-configuration",
                self.smart_configuration,
                methods=["GET"],
            ),
            Route("/oauth/jwks", self.jwks, methods=["GET"]),
            Route("/oauth/authorize", self.authorize_form, methods=["GET"]),
            Route("/oauth/authorize", self.authorize_submit, methods=["POST"]),
            Route("/oauth/token", self.token, methods=["POST"]),
            Route("/oauth/revoke", self.revoke, methods=["POST"]),
            Route("/oauth/break-glass", self.break_glass, methods=["POST"]),
        ]

    def _root(self, request: Request) -> str:
        return str(request.base_url).rstrip("/")

    async def smart_configuration(self, request: Request) -> Response:
        root = self._root(request)
        return JSONResponse(
            {
                "issuer": self.access.signer.issuer,
                "jwks_uri": f"{root}/oauth/jwks",
                "authorization_endpoint": f"{root}/oauth/authorize",
                "token_endpoint": f"{root}/oauth/token",
                "revocation_endpoint": f"{root}/oauth/revoke",
                "token_endpoint_auth_methods_supported": ["private_key_jwt", "none"],
                "token_endpoint_auth_signing_alg_values_supported": ["RS384", "ES384"],
                "grant_types_supported": [
                    "authorization_code",
                    "refresh_token",
                    "client_credentials",
                ],
                "response_types_supported": ["code"],
                "code_challenge_methods_supported": ["S256"],
                "scopes_supported": [
                    "launch/patient",
                    "offline_access",
                    "online_access",
                    "patient/*.rs",
                    "user/*.cruds",
                    "system/*.rs",
                    "patient/*.read",
                ],
                "capabilities": [
                    "launch-standalone",
                    "client-public",
                    "client-confidential-asymmetric",
                    "context-standalone-patient",
                    "permission-offline",
                    "permission-online",
                    "permission-patient",
                    "permission-user",
                    "permission-v1",
                    "permission-v2",
                ],
            }
        )

    async def jwks(self, request: Request) -> Response:
        return JSONResponse(self.access.signer.jwks())

    # -- authorization code + PKCE ---------------------------------------------------------------
    def _check_authorize(self, params: dict[str, str]) -> tuple[Any, str]:
        """(client, granted scope); OAuthError for anything not exactly right."""
        client = self.access.store.client(params.get("client_id", ""))
        if client is None or client.disabled or client.kind != clients.PUBLIC:
            raise InvalidClient()
        if params.get("redirect_uri") not in clients.redirect_uris(client):
            raise InvalidClient("the redirect URI is not registered for this client")
        if params.get("response_type") != "code":
            raise OAuthError("response_type must be code")
        if params.get("code_challenge_method") != "S256" or not params.get("code_challenge"):
            raise OAuthError("PKCE with S256 is required")
        scope = check_within(params.get("scope", ""), client.scope)
        if any(s.context == SYSTEM for s in parse_scopes(scope)[0]):
            raise InvalidScope()
        return client, scope

    def _page(
        self,
        request: Request,
        params: dict[str, str],
        client: Any,
        message: str,
        status: int,
    ) -> Response:
        nonce = request.cookies.get(csrf.COOKIE)
        if not csrf.valid_nonce(nonce):
            nonce = csrf.new_nonce()
        assert nonce is not None
        fields = {k: params.get(k, "") for k in _AUTHORIZE_PARAMS}
        fields[csrf.FIELD] = self.csrf.issue(nonce, params, _AUTHORIZE_PARAMS)
        hidden = "\n".join(
            f'<input type="hidden" name="{k}" value="{html.escape(v)}">' for k, v in fields.items()
        )
        patient_field = ""
        if "launch/patient" in params.get("scope", "").split():
            patient_field = '<p><label>Patient id <input name="patient" required></label></p>'
        body = _login_template().substitute(
            client=html.escape(client.name),
            scope=html.escape(params.get("scope", "")),
            message=html.escape(message),
            action="/oauth/authorize",
            hidden=hidden,
            patient_field=patient_field,
        )
        response = HTMLResponse(
            body, status_code=status, headers={**_NO_STORE, **_page_headers(params)}
        )
        response.set_cookie(
            csrf.COOKIE,
            nonce,
            max_age=int(csrf.LIFETIME),
            path="/oauth/authorize",
            secure=request.url.scheme == "https",
            httponly=True,
            samesite="strict",
        )
        return response

    async def authorize_form(self, request: Request) -> Response:
        params = {k: request.query_params.get(k, "") for k in _AUTHORIZE_PARAMS}
        try:
            client, _ = await to_thread.run_sync(self._check_authorize, params)
        except PhivaultError as exc:
            return _oauth_error(exc)
        return self._page(request, params, client, "", 200)

    async def authorize_submit(self, request: Request) -> Response:
        try:
            form = await _form(request)
        except PhivaultError as exc:
            return _oauth_error(exc)
        params = {k: form.get(k, "") for k in _AUTHORIZE_PARAMS}
        try:
            client, scope = await to_thread.run_sync(self._check_authorize, params)
        except PhivaultError as exc:
            return _oauth_error(exc)
        address = request.client.host if request.client else None
        token = form.get(csrf.FIELD, "")
        if not self.csrf.check(token, request.cookies.get(csrf.COOKIE), params, _AUTHORIZE_PARAMS):
            # Before any password is looked at: a forged POST learns nothing, locks nobody.
            await to_thread.run_sync(self._audit_csrf, address)
            message = "This sign-in form expired or did not come from this server; sign in again."
            return self._page(request, params, client, message, 403)
        try:
            user = await to_thread.run_sync(
                self.access.login.login,
                str(form.get("username", "")),
                str(form.get("password", "")),
                str(form.get("otp", "")),
                address,
            )
        except TooManyAttempts as exc:
            return self._page(request, params, client, exc.message, 429)
        except LoginFailed as exc:
            return self._page(request, params, client, exc.message, 401)
        patient = str(form.get("patient", "")).strip() or None
        code = await to_thread.run_sync(
            lambda: self.access.sessions.new_code(
                user.user_id,
                client.client_id,
                params["redirect_uri"],
                scope,
                patient,
                params["code_challenge"],
            )
        )
        query = urlencode({"code": code, "state": params.get("state", "")})
        return RedirectResponse(f"{params['redirect_uri']}?{query}", status_code=303)

    def _audit_csrf(self, address: str | None) -> None:
        self.access.audit.record(
            AccessEvent(
                action="login",
                outcome=MINOR_FAILURE,
                actor="anonymous",
                client=address,
                detail="CsrfRejected",
            )
        )

    # -- the token endpoint ----------------------------------------------------------------------
    async def token(self, request: Request) -> Response:
        token_url = f"{self._root(request)}/oauth/token"
        try:
            form = await _form(request)
            grant = form.get("grant_type")
            if grant == "authorization_code":
                body = await to_thread.run_sync(self._code_grant, form)
            elif grant == "refresh_token":
                body = await to_thread.run_sync(self._refresh_grant, form)
            elif grant == "client_credentials":
                body = await to_thread.run_sync(self._client_credentials, form, token_url)
            else:
                raise UnsupportedGrantType()
        except PhivaultError as exc:
            return _oauth_error(exc)
        return JSONResponse(body, headers=_NO_STORE)

    def _code_grant(self, form: dict[str, str]) -> dict[str, Any]:
        row = self.access.sessions.redeem_code(
            form.get("code", ""),
            form.get("client_id", ""),
            form.get("redirect_uri", ""),
            form.get("code_verifier", ""),
        )
        user = self.access.users.get(row.user_id)
        if user is None or user.disabled:
            raise InvalidGrant()
        session = self.access.sessions.open(row.user_id, row.client_id, row.scope, row.patient)
        token, expires_in = self.access.user_token(
            session.session_id, row.user_id, row.client_id, row.scope
        )
        body: dict[str, Any] = {
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": expires_in,
            "scope": row.scope,
        }
        if row.patient:
            body["patient"] = row.patient
        if {"offline_access", "online_access"} & set(row.scope.split()):
            body["refresh_token"] = self.access.sessions.new_refresh(session, row.scope)
        return body

    def _refresh_grant(self, form: dict[str, str]) -> dict[str, Any]:
        session, scope, refresh = self.access.sessions.rotate(
            form.get("refresh_token", ""), form.get("client_id") or None
        )
        if form.get("scope"):
            scope = check_within(form["scope"], scope)  # a refresh may narrow, never widen
        token, expires_in = self.access.user_token(
            session.session_id, session.user_id, session.client_id, scope
        )
        body: dict[str, Any] = {
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": expires_in,
            "scope": scope,
            "refresh_token": refresh,
        }
        if session.patient:
            body["patient"] = session.patient
        return body

    def _client_credentials(self, form: dict[str, str], token_url: str) -> dict[str, Any]:
        if form.get("client_assertion_type") != ASSERTION_TYPE:
            raise InvalidClient()
        assertion = form.get("client_assertion", "")
        client_id = form.get("client_id") or _unverified_issuer(assertion)
        client = self.access.store.client(client_id or "")
        if client is None or client.disabled or client.kind != clients.BACKEND:
            raise InvalidClient()
        now = self.access.clock()
        claims = verify_client_assertion(
            assertion, client.client_id, clients.client_jwks(client), token_url, now=now
        )
        if not self.access.store.remember_jti(str(claims["jti"]), float(claims["exp"]), now):
            raise InvalidClient()  # a replayed assertion
        scope = check_within(form.get("scope", ""), client.scope)
        token, expires_in = self.access.system_token(client.client_id, scope)
        self.access.audit.record(
            AccessEvent(action="token", outcome=SUCCESS, actor=client.client_id, client=client_id)
        )
        return {
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": expires_in,
            "scope": scope,
        }

    # -- revocation and break-glass --------------------------------------------------------------
    async def revoke(self, request: Request) -> Response:
        try:
            form = await _form(request)
        except PhivaultError as exc:
            return _oauth_error(exc)
        await to_thread.run_sync(self._revoke, form.get("token", ""))
        return Response(status_code=200, headers=_NO_STORE)  # RFC 7009: 200 whatever it was

    def _revoke(self, token: str) -> None:
        access = self.access
        row, _ = access.store.use_refresh(access.keys.keyed_hash("refresh", token))
        if row is not None:
            access.sessions.revoke(row.session_id)
            return
        try:
            claims = access.signer.verify(token)
        except InvalidToken:
            return
        if isinstance(claims.get("sid"), str):
            access.sessions.revoke(claims["sid"])

    async def break_glass(self, request: Request) -> Response:
        ctx = request.scope.get(CONTEXT_KEY)
        if not isinstance(ctx, Context) or ctx.principal is None:
            raise InvalidToken()
        form = await _form(request)
        reason = " ".join(form.get("reason", "").split())
        principal = ctx.principal
        if not principal.is_clinical or principal.session_id is None or len(reason) < 5:
            await to_thread.run_sync(self._audit_break_glass, ctx, "BreakGlassRefused", None)
            raise BreakGlassRefused()
        until = await to_thread.run_sync(
            self.access.sessions.start_break_glass, principal.session_id, reason
        )
        await to_thread.run_sync(self._audit_break_glass, ctx, None, reason)
        return JSONResponse({"break_glass_until": int(until)}, headers=_NO_STORE)

    def _audit_break_glass(self, ctx: Context, refused: str | None, reason: str | None) -> None:
        self.access.audit.record(
            AccessEvent(
                action="break-glass",
                outcome=SUCCESS if refused is None else "4",
                actor=ctx.actor,
                client=ctx.client,
                purpose=reason[:200] if reason else None,
                detail=refused,
                # Detectors pick this up: every break-glass is reviewed.
                extra={"alert": "break-glass"} if refused is None else {},
            )
        )


def _page_headers(params: dict[str, str]) -> dict[str, str]:
    """The login page may not be framed (clickjacking), loads nothing, and may submit only
    to this server, which then redirects to the client's registered redirect URI (whose
    origin form-action must allow too: browsers apply it to the redirect)."""
    sources = ["'self'"]
    target = urlsplit(params.get("redirect_uri", ""))
    if target.scheme in ("http", "https") and target.netloc:
        sources.append(f"{target.scheme}://{target.netloc}")
    elif target.scheme:
        sources.append(f"{target.scheme}:")
    sources = [s for s in sources if not set(s) & set(" ;,'\"\r\n")] or ["'self'"]
    if "'self'" not in sources:
        sources.insert(0, "'self'")
    return {
        "X-Frame-Options": "DENY",
        "Content-Security-Policy": (
            "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; "
            f"form-action {' '.join(sources)}"
        ),
    }


def _unverified_issuer(assertion: str) -> str | None:
    """The `iss` of an assertion, only to find the key that must then verify it."""
    try:
        payload = assertion.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError):
        return None
    issuer = claims.get("iss") if isinstance(claims, dict) else None
    return issuer if isinstance(issuer, str) else None
