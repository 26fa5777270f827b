"""Knosc authentication: cookie JWTs with CSRF, refresh, logout, lockout, 2FA, first sign-in, password reset.

API-NOTES §2 and CONTRACT §1 are the specification. Where both are silent the choices are:
- Tokens are HS256 JWTs signed with a secret drawn at start, so a restarted sim refuses old tokens.
- The CSRF value of each cookie pair is a claim of its JWT (`csrf`), so a CSRF token only works with the
  token it was issued with.
- Every token carries the session it belongs to (`sid`); logout revokes the session server-side, because the
  documented logout cookies carry no Path and therefore do not replace path-scoped cookies in a cookie jar.
- `POST /_sim/expire-tokens` moves a token generation forward; tokens of older generations answer
  `Token.Expired`, the same as tokens that outlived their lifetime.
- Expiry is checked against the float `exp` claim here rather than by PyJWT (which rounds to whole
  seconds), so one-second lifetimes in tests behave exactly.
"""

from __future__ import annotations

import base64
import hmac
import math
import re
import secrets
import threading
import time
import uuid
from typing import Callable, Optional

import jwt
import pyotp

from sim.http_types import Request, Response, error

MUTATING = frozenset(("POST", "PUT", "PATCH", "DELETE"))
ACCESS_COOKIE = "access_token_cookie"
REFRESH_COOKIE = "refresh_token_cookie"
CSRF_ACCESS_COOKIE = "csrf_access_token"
CSRF_REFRESH_COOKIE = "csrf_refresh_token"
REFRESH_PATH = "/api/token-refresh"
EXPIRED_COOKIE = "Expires=Thu, 01 Jan 1970 00:00:00 GMT"

PENDING_2FA_SECONDS = 300.0          # how long a correct password lets verify-2fa finish the login
FIRST_SIGNIN_SECONDS = 600.0         # lifetime of the session_token returned for a first sign-in
RESET_TOKEN_SECONDS = 48 * 3600.0    # API-NOTES §2.6
MIN_PASSWORD = 8
LOCK_AFTER = 3                       # CONTRACT §1: 3 consecutive failures lock the account

# A 1x1 PNG: the simulator cannot draw QR codes without extra packages, and clients only need a data URL.
_PNG_1X1 = base64.b64encode(bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000001e221bc330000000049454e44ae426082")).decode()

RESET_2FA_RE = re.compile(r"^/api/user/(-?\d+)/reset-2fa$")

# path -> (method, handler name, needs session)
_ROUTES = {
    "/api/authenticate": ("POST", "login", False),
    "/api/logout": ("POST", "logout", True),
    "/api/token-refresh": ("POST", "refresh", False),
    "/api/first-signin": ("POST", "first_signin", False),
    "/api/forgot-password": ("POST", "forgot_password", False),
    "/api/reset-password": ("POST", "reset_password", False),
    "/api/force-reset-password": ("POST", "force_reset_password", True),
    "/api/setup-2fa/generate": ("POST", "setup_2fa_generate", True),
    "/api/setup-2fa/activate": ("POST", "setup_2fa_activate", True),
    "/api/verify-2fa": ("POST", "verify_2fa", False),
    "/api/profile": ("GET", "profile", True),
}


def token_missing() -> Response:
    return error(401, "Missing access token", "Token.Missing")


def token_expired() -> Response:
    return error(401, "Token has expired", "Token.Expired")


def token_invalid() -> Response:
    return error(401, "Invalid token", "Token.Invalid")


def csrf_invalid() -> Response:
    return error(422, "Missing or invalid CSRF token", "CSRF.Invalid")


def bad_json() -> Response:
    return error(400, "Bad Request Format", "JSON.Invalid")


def not_privileged() -> Response:
    return error(403, "Not Privileged for this action", "User.NotPrivileged")


def parse_cookies(header: Optional[str]) -> dict[str, str]:
    """Cookie header -> {name: value}; the first occurrence wins (the most specific path comes first).

    Hand-rolled rather than http.cookies.SimpleCookie, which drops every cookie when one is malformed.
    """
    out: dict[str, str] = {}
    if not header:
        return out
    for part in header.split(";"):
        name, sep, value = part.strip().partition("=")
        if sep and name and name not in out:
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] == '"':
                value = value[1:-1]
            out[name] = value
    return out


class TokenError(Exception):
    def __init__(self, response: Response):
        super().__init__(response.body)
        self.response = response


class Auth:
    """Issues and checks session tokens and serves the authentication routes."""

    def __init__(self, tenant, access_ttl: float = 900.0, refresh_ttl: float = 2592000.0,
                 lockout_base: float = 30.0, clock: Callable[[], float] = time.time):
        self.tenant = tenant
        self.access_ttl = float(access_ttl)
        self.refresh_ttl = float(refresh_ttl)
        self.lockout_base = float(lockout_base)
        self.clock = clock
        self._secret = secrets.token_bytes(32)
        self._lock = threading.Lock()
        self._generation = 0
        self._revoked_sessions: set[str] = set()
        self._pending_2fa: dict[int, float] = {}          # user id -> deadline for verify-2fa
        self._pending_setup: dict[int, str] = {}          # user id -> secret awaiting activation
        self._reset_tokens: dict[str, tuple[int, float]] = {}  # token -> (user id, expiry)

    # ---------------------------------------------------------------------------------------------------
    # Routing
    @staticmethod
    def owns(path: str) -> bool:
        return path in _ROUTES or RESET_2FA_RE.match(path) is not None

    def handle(self, req: Request) -> Response:
        m = RESET_2FA_RE.match(req.path)
        if m:
            method, name, needs_session, arg = "POST", "reset_2fa", True, int(m.group(1))
        else:
            method, name, needs_session = _ROUTES[req.path]
            arg = None
        verb = "GET" if req.method == "HEAD" else req.method
        if verb != method:
            return error(405, "Method Not Allowed", "Route.MethodNotAllowed")
        if needs_session:
            failure = self.check_session(req)
            if failure is not None:
                return failure
        handler = getattr(self, "_r_" + name)
        return handler(req) if arg is None else handler(req, arg)

    # ---------------------------------------------------------------------------------------------------
    # Tokens
    def _encode(self, claims: dict) -> str:
        return jwt.encode(claims, self._secret, algorithm="HS256")

    def _claims(self, user: dict, kind: str, ttl: float, sid: str, csrf: Optional[str]) -> dict:
        now = self.clock()
        claims = {
            "sub": str(user["id"]),
            "type": kind,
            "iat": round(now, 3),
            "exp": round(now + ttl, 3),
            "last_modified_at": float(user.get("_last_modified_at") or 0.0),
            "jti": uuid.uuid4().hex,
            "sid": sid,
            "gen": self._generation,
        }
        if csrf is not None:
            claims["csrf"] = csrf
        return claims

    def decode(self, token: str, kind: str) -> tuple[dict, dict]:
        """Check a token of the given type; returns (claims, user) or raises TokenError."""
        try:
            claims = jwt.decode(token, self._secret, algorithms=["HS256"],
                                options={"verify_exp": False, "verify_iat": False, "verify_nbf": False,
                                         "require": ["sub", "type", "exp"]})
        except Exception:   # PyJWT errors, and anything odd a forged token provokes while decoding
            raise TokenError(token_invalid()) from None
        if not isinstance(claims, dict) or claims.get("type") != kind:
            raise TokenError(token_invalid())
        try:
            exp = float(claims["exp"])
            user_id = int(claims["sub"])
        except (TypeError, ValueError):
            raise TokenError(token_invalid()) from None
        if exp <= self.clock() or claims.get("gen") != self._generation:
            raise TokenError(token_expired())
        if claims.get("sid") in self._revoked_sessions:
            raise TokenError(token_invalid())
        user = self.tenant.user_by_id(user_id)
        if user is None or user.get("User Status", "Active") != "Active":
            raise TokenError(token_invalid())
        # API-NOTES §2.3: a password, role or status change invalidates tokens issued before it.
        if float(user.get("_last_modified_at") or 0.0) > float(claims.get("last_modified_at") or 0.0) + 1e-6:
            raise TokenError(token_invalid())
        return claims, user

    def check_session(self, req: Request) -> Optional[Response]:
        """Authenticate req from its access cookie and check CSRF; sets req.user. None when it passes."""
        token = parse_cookies(req.headers.get("Cookie")).get(ACCESS_COOKIE)
        if not token:
            return token_missing()
        try:
            claims, user = self.decode(token, "access")
        except TokenError as exc:
            return exc.response
        if req.method in MUTATING and not _same(req.headers.get("X-XSRF-TOKEN"), claims.get("csrf")):
            return csrf_invalid()
        req.user = user
        return None

    def _session_cookies(self, user: dict, with_refresh: bool = True) -> list[str]:
        sid = uuid.uuid4().hex
        access_csrf = secrets.token_urlsafe(24)
        cookies = [
            "%s=%s; HttpOnly; SameSite=Lax; Path=/" % (
                ACCESS_COOKIE, self._encode(self._claims(user, "access", self.access_ttl, sid, access_csrf))),
        ]
        if with_refresh:
            refresh_csrf = secrets.token_urlsafe(24)
            cookies.append("%s=%s; HttpOnly; SameSite=Lax; Path=%s" % (
                REFRESH_COOKIE, self._encode(self._claims(user, "refresh", self.refresh_ttl, sid, refresh_csrf)),
                REFRESH_PATH))
            cookies.append("%s=%s; SameSite=Lax; Path=/" % (CSRF_ACCESS_COOKIE, access_csrf))
            cookies.append("%s=%s; SameSite=Lax; Path=%s" % (CSRF_REFRESH_COOKIE, refresh_csrf, REFRESH_PATH))
        else:
            cookies.append("%s=%s; SameSite=Lax; Path=/" % (CSRF_ACCESS_COOKIE, access_csrf))
        return cookies

    def expire_all(self) -> None:
        """Every token issued so far stops working (control API)."""
        with self._lock:
            self._generation += 1

    def reset_token_for(self, email: str) -> Optional[str]:
        """The newest unexpired password-reset token of an account (control API)."""
        user = self.tenant.find_user(email)
        if user is None:
            return None
        now = self.clock()
        with self._lock:
            for token, (uid, exp) in reversed(list(self._reset_tokens.items())):
                if uid == user["id"] and exp > now:
                    return token
        return None

    # ---------------------------------------------------------------------------------------------------
    # Helpers
    @staticmethod
    def _body(req: Request) -> Optional[dict]:
        try:
            body = req.json()
        except ValueError:
            return None
        return body if isinstance(body, dict) else None

    def _is_admin(self, user: dict) -> bool:
        if user.get("Role Name") == "Administrator":
            return True
        return self.tenant.privileges(user).get("Users") == "Edit"

    def _set(self, user_id: int, **fields) -> None:
        self.tenant.update_user_secret(user_id, **fields)

    # ---------------------------------------------------------------------------------------------------
    # Routes
    def _r_login(self, req: Request) -> Response:
        body = self._body(req)
        if body is None or not isinstance(body.get("username"), str) or not isinstance(body.get("password"), str):
            return bad_json()
        user = self.tenant.find_user(body["username"])
        now = self.clock()
        with self._lock:
            if user is not None:
                locked_until = float(user.get("_locked_until") or 0.0)
                if locked_until > now:
                    resp = error(429, "Account temporarily locked", "User.Locked")
                    resp.headers["Retry-After"] = str(max(1, math.ceil(locked_until - now)))
                    return resp
            ok = (user is not None and user.get("User Status", "Active") == "Active"
                  and _same(body["password"], user.get("_password")))
            if not ok:
                if user is not None:
                    failures = int(user.get("_failed_logins") or 0) + 1
                    fields = {"_failed_logins": failures}
                    if failures >= LOCK_AFTER:
                        # CONTRACT §1: the lock doubles with every further failure.
                        fields["_locked_until"] = now + self.lockout_base * 2 ** min(failures - LOCK_AFTER, 20)
                    self._set(user["id"], **fields)
                return error(401, "Invalid username or password.", "User.InvalidCredentials")
            if user.get("_failed_logins") or user.get("_locked_until"):
                self._set(user["id"], _failed_logins=0, _locked_until=0.0)
        if user.get("_first_signin"):
            token = self._encode({
                "sub": str(user["id"]), "type": "first_signin", "iat": round(now, 3),
                "exp": round(now + FIRST_SIGNIN_SECONDS, 3),
                "last_modified_at": float(user.get("_last_modified_at") or 0.0),
                "jti": uuid.uuid4().hex, "gen": self._generation})
            return Response(200, {"first_signin": True, "session_token": token})
        if user.get("_2fa_enabled"):
            with self._lock:
                self._pending_2fa[user["id"]] = now + PENDING_2FA_SECONDS
            return Response(200, {"requires_2fa": True})
        return Response(200, {"login": True}, cookies=self._session_cookies(user))

    def _r_verify_2fa(self, req: Request) -> Response:
        body = self._body(req)
        if body is None or not isinstance(body.get("username"), str) or not isinstance(body.get("totp_code"), str):
            return bad_json()
        invalid = error(401, "Invalid or expired TOTP code.", "2FA.InvalidCode")
        user = self.tenant.find_user(body["username"])
        if user is None or not user.get("_2fa_enabled") or not user.get("_totp_secret"):
            return invalid
        now = self.clock()
        with self._lock:
            # verify-2fa only finishes a login whose password step succeeded moments ago.
            if self._pending_2fa.get(user["id"], 0.0) <= now:
                return invalid
            if not pyotp.TOTP(user["_totp_secret"]).verify(body["totp_code"].strip(), valid_window=1):
                return invalid
            del self._pending_2fa[user["id"]]
        # API-NOTES §2.4 shows only the access cookie and its CSRF cookie for this path.
        return Response(200, {"login": True}, cookies=self._session_cookies(user, with_refresh=False))

    def _r_first_signin(self, req: Request) -> Response:
        body = self._body(req)
        if body is None or not isinstance(body.get("session_token"), str) or not isinstance(body.get("new_password"), str):
            return bad_json()
        if len(body["new_password"]) < MIN_PASSWORD:
            return error(400, "Password must be at least 8 characters.", "User.PasswordTooShort")
        try:
            claims, user = self.decode(body["session_token"], "first_signin")
        except TokenError as exc:
            return exc.response
        if not user.get("_first_signin"):
            return token_invalid()
        self._set(user["id"], _password=body["new_password"], _first_signin=False,
                  _last_modified_at=self.clock())
        user = self.tenant.user_by_id(user["id"])
        # API-NOTES §2.5 shows only the access cookie and its CSRF cookie for this path.
        return Response(200, {"login": True}, cookies=self._session_cookies(user, with_refresh=False))

    def _r_logout(self, req: Request) -> Response:
        claims = jwt.decode(parse_cookies(req.headers.get("Cookie"))[ACCESS_COOKIE], self._secret,
                            algorithms=["HS256"], options={"verify_exp": False, "verify_iat": False})
        with self._lock:
            self._revoked_sessions.add(claims.get("sid"))
        return Response(200, {"logout": True}, cookies=[
            "%s=; %s" % (ACCESS_COOKIE, EXPIRED_COOKIE),
            "%s=; %s" % (REFRESH_COOKIE, EXPIRED_COOKIE),
        ])

    def _r_refresh(self, req: Request) -> Response:
        token = parse_cookies(req.headers.get("Cookie")).get(REFRESH_COOKIE)
        if not token:
            return error(401, "Missing refresh token", "Token.Missing")
        try:
            claims, user = self.decode(token, "refresh")
        except TokenError as exc:
            return exc.response
        # CONTRACT §1: only the refresh CSRF token is accepted here.
        if not _same(req.headers.get("X-XSRF-TOKEN"), claims.get("csrf")):
            return csrf_invalid()
        access_csrf = secrets.token_urlsafe(24)
        access = self._encode(self._claims(user, "access", self.access_ttl, claims.get("sid"), access_csrf))
        return Response(200, {"refresh": True}, cookies=[
            "%s=%s; HttpOnly; SameSite=Lax; Path=/" % (ACCESS_COOKIE, access),
            "%s=%s; SameSite=Lax; Path=/" % (CSRF_ACCESS_COOKIE, access_csrf),
        ])

    def _r_forgot_password(self, req: Request) -> Response:
        body = self._body(req)
        if body is None or not isinstance(body.get("email"), str):
            return bad_json()
        user = self.tenant.find_user(body["email"])
        if user is not None and user.get("User Status", "Active") == "Active":
            token = secrets.token_urlsafe(32)
            with self._lock:
                self._reset_tokens[token] = (user["id"], self.clock() + RESET_TOKEN_SECONDS)
            self._set(user["id"], _reset_token=token)
        # Anti-enumeration (API-NOTES §2.6): the same answer whether or not the account exists.
        return Response(200, {"message": "If an account with that email exists, a reset link has been sent."})

    def _r_reset_password(self, req: Request) -> Response:
        body = self._body(req)
        if body is None or not isinstance(body.get("session_token"), str) or not isinstance(body.get("new_password"), str):
            return bad_json()
        if len(body["new_password"]) < MIN_PASSWORD:
            return error(400, "Password must be at least 8 characters.", "User.PasswordTooShort")
        now = self.clock()
        with self._lock:
            entry = self._reset_tokens.get(body["session_token"])
            if entry is None or entry[1] <= now:
                return error(400, "Invalid or expired reset token.", "User.InvalidResetToken")
            user_id = entry[0]
            for token, (uid, _exp) in list(self._reset_tokens.items()):
                if uid == user_id:
                    del self._reset_tokens[token]
        if self.tenant.user_by_id(user_id) is None:
            return error(400, "Invalid or expired reset token.", "User.InvalidResetToken")
        self._set(user_id, _password=body["new_password"], _reset_token=None, _first_signin=False,
                  _failed_logins=0, _locked_until=0.0, _last_modified_at=now)
        return Response(200, {"message": "Password updated successfully."})

    def _r_force_reset_password(self, req: Request) -> Response:
        if not self._is_admin(req.user):
            return not_privileged()
        body = self._body(req)
        if body is None or type(body.get("user_id")) is not int:
            return bad_json()
        user = self.tenant.user_by_id(body["user_id"])
        if user is None:
            return error(400, "User #%d not found." % body["user_id"], "User.NotFound")
        # The user must choose a new password at the next login; the tokens they hold die now.
        self._set(user["id"], _first_signin=True, _last_modified_at=self.clock())
        return Response(200, {"message": "Password reset initiated for user."})

    def _r_setup_2fa_generate(self, req: Request) -> Response:
        secret = pyotp.random_base32()
        with self._lock:
            self._pending_setup[req.user["id"]] = secret
        return Response(200, {"secret": secret, "qr_code": "data:image/png;base64," + _PNG_1X1})

    def _r_setup_2fa_activate(self, req: Request) -> Response:
        body = self._body(req)
        if body is None or not isinstance(body.get("totp_code"), str):
            return bad_json()
        with self._lock:
            secret = self._pending_setup.get(req.user["id"])
            if secret is None or not pyotp.TOTP(secret).verify(body["totp_code"].strip(), valid_window=1):
                return error(400, "Invalid TOTP code.", "2FA.InvalidCode")
            del self._pending_setup[req.user["id"]]
        self._set(req.user["id"], _totp_secret=secret, _2fa_enabled=True)
        return Response(200, {"message": "Two-factor authentication enabled."})

    def _r_reset_2fa(self, req: Request, user_id: int) -> Response:
        if not self._is_admin(req.user):
            return not_privileged()
        user = self.tenant.user_by_id(user_id)
        if user is None:
            return error(400, "User #%d not found." % user_id, "User.NotFound")
        self._set(user_id, _totp_secret=None, _2fa_enabled=False)
        return Response(200, {"message": "Two-factor authentication reset."})

    def _r_profile(self, req: Request) -> Response:
        return Response(200, self.tenant.profile(req.user))


def _same(given: Optional[str], expected: Optional[str]) -> bool:
    if not isinstance(given, str) or not isinstance(expected, str) or not expected:
        return False
    return hmac.compare_digest(given.encode("utf-8", "surrogateescape"), expected.encode("utf-8", "surrogateescape"))
