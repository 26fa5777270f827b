"""Authentication as API-NOTES §2 and CONTRACT §1 describe it, observed from a real HTTP client."""

from __future__ import annotations

import re
import time

import jwt
import pyotp
import pytest
import requests

from conftest import KnoscSession, login, start_sim

ACCOUNTS = [
    ("sync@acme.example", "sync-password"),
    ("admin@acme.example", "admin-password"),
    ("viewer@acme.example", "viewer-password"),
    ("wh1@acme.example", "wh1-password"),
]
TWOFA_SECRET = "JBSWY3DPEHPK3PXP"


def set_cookies(resp: requests.Response) -> list[str]:
    return resp.raw.headers.getlist("Set-Cookie")


def cookie_named(resp: requests.Response, name: str) -> str:
    found = [c for c in set_cookies(resp) if c.startswith(name + "=")]
    assert len(found) == 1, set_cookies(resp)
    return found[0]


def wait_until(check, timeout: float = 10.0, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result is not None and result is not False:   # a requests.Response with status >= 400 is falsy
            return result
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in %.1f s" % timeout)
        time.sleep(interval)


def assert_error(resp: requests.Response, status: int, code: str) -> None:
    assert resp.status_code == status, (resp.status_code, resp.text)
    body = resp.json()
    assert body["Code"] == code, body
    assert isinstance(body["Message"], str) and body["Message"]


def user_id(sess: KnoscSession) -> int:
    r = sess.get("/api/profile")
    assert r.status_code == 200, r.text
    return r.json()["data"]["id"]


# ---------------------------------------------------------------------------------------------------------
# Login and cookies

@pytest.mark.parametrize("username,password", ACCOUNTS)
def test_seeded_accounts_log_in(sim, username, password):
    s = login(sim, username, password)
    r = s.get("/api/profile")
    assert r.status_code == 200
    data = r.json()["data"]
    assert data["Username"] == username
    assert isinstance(data["id"], int)


def test_login_sets_the_four_cookies_exactly(sim):
    r = requests.post(sim.base + "/authenticate", json={"username": "sync@acme.example", "password": "sync-password"})
    assert r.status_code == 200
    assert r.json() == {"login": True}
    assert r.headers["Content-Type"] == "application/json"
    cookies = set_cookies(r)
    assert len(cookies) == 4
    assert re.fullmatch(r"access_token_cookie=[\w.-]+; HttpOnly; SameSite=Lax; Path=/",
                        cookie_named(r, "access_token_cookie"))
    assert re.fullmatch(r"refresh_token_cookie=[\w.-]+; HttpOnly; SameSite=Lax; Path=/api/token-refresh",
                        cookie_named(r, "refresh_token_cookie"))
    assert re.fullmatch(r"csrf_access_token=[\w-]+; SameSite=Lax; Path=/", cookie_named(r, "csrf_access_token"))
    assert re.fullmatch(r"csrf_refresh_token=[\w-]+; SameSite=Lax; Path=/api/token-refresh",
                        cookie_named(r, "csrf_refresh_token"))


def test_tokens_carry_the_documented_claims(sim):
    r = requests.post(sim.base + "/authenticate", json={"username": "sync@acme.example", "password": "sync-password"})
    access = jwt.decode(r.cookies["access_token_cookie"], options={"verify_signature": False})
    refresh = jwt.decode(r.cookies["refresh_token_cookie"], options={"verify_signature": False})
    for claims, kind in ((access, "access"), (refresh, "refresh")):
        assert claims["type"] == kind
        for key in ("sub", "iat", "exp", "last_modified_at", "jti", "csrf"):
            assert key in claims
    assert access["csrf"] == r.cookies["csrf_access_token"]
    assert refresh["csrf"] == r.cookies["csrf_refresh_token"]
    assert access["jti"] != refresh["jti"]
    assert 890 <= access["exp"] - access["iat"] <= 910
    assert refresh["exp"] - refresh["iat"] > 29 * 86400
    # The cookie jar sends the refresh token only to the refresh route.
    s = login(sim)
    paths = {c.name: c.path for c in s.cookies}
    assert paths == {"access_token_cookie": "/", "refresh_token_cookie": "/api/token-refresh",
                     "csrf_access_token": "/", "csrf_refresh_token": "/api/token-refresh"}


def test_login_by_username_is_case_insensitive(sim):
    login(sim, "SYNC@ACME.example", "sync-password")


@pytest.mark.parametrize("body", [
    {"username": "sync@acme.example", "password": "wrong-password"},
    {"username": "nobody@acme.example", "password": "sync-password"},
])
def test_bad_credentials(sim, body):
    r = requests.post(sim.base + "/authenticate", json=body)
    assert_error(r, 401, "User.InvalidCredentials")
    assert r.json()["Message"] == "Invalid username or password."
    assert set_cookies(r) == []


@pytest.mark.parametrize("raw", [b"", b"{", b"[]", b'{"username": "x"}', b'{"username": 1, "password": 2}',
                                 b"\xff\xfe{\x00}", b"null"])
def test_malformed_login_body(sim, raw):
    r = requests.post(sim.base + "/authenticate", data=raw, headers={"Content-Type": "application/json"})
    assert_error(r, 400, "JSON.Invalid")
    assert r.json()["Message"] == "Bad Request Format"


def test_auth_routes_reject_other_methods(sim):
    r = requests.get(sim.base + "/authenticate")
    assert r.status_code == 405
    assert r.json()["Code"] == "Route.MethodNotAllowed"


# ---------------------------------------------------------------------------------------------------------
# Session checks

def test_missing_token(sim):
    for path in ("/profile", "/item-master", "/purchase-order", "/no-such-route"):
        assert_error(requests.get(sim.base + path), 401, "Token.Missing")
    assert requests.get(sim.base + "/profile").json()["Message"] == "Missing access token"


def test_invalid_tokens(sim, svc):
    good = svc.cookies.get("access_token_cookie", path="/")
    claims = jwt.decode(good, options={"verify_signature": False})
    forged = jwt.encode(claims, "not-the-secret", algorithm="HS256")
    for token in ("garbage", good[:-3] + "abc", forged):
        r = requests.get(sim.base + "/profile", cookies={"access_token_cookie": token})
        assert_error(r, 401, "Token.Invalid")
        assert r.json()["Message"] == "Invalid token"
    # A refresh token is not an access token.
    refresh = [c.value for c in svc.cookies if c.name == "refresh_token_cookie"][0]
    assert_error(requests.get(sim.base + "/profile", cookies={"access_token_cookie": refresh}), 401, "Token.Invalid")


def test_profile(sim):
    s = login(sim, "wh1@acme.example", "wh1-password")
    data = s.get("/api/profile").json()["data"]
    assert data["Username"] == data["User Email"] == "wh1@acme.example"
    assert data["Role Name"] == "WH-01 Planner"
    assert {"category": "Warehouse Number", "type": "include", "values": ["WH-01"]} in data["Granular Filters"]
    privileges = {p["type"]: p["access"] for p in data["Privileges"]}
    assert privileges["Procurement"] == "Edit"


# ---------------------------------------------------------------------------------------------------------
# CSRF

@pytest.mark.parametrize("method,path", [
    ("POST", "/api/item-master"), ("PUT", "/api/item-master/999999999"), ("PATCH", "/api/user-settings"),
    ("DELETE", "/api/item-master/999999999"), ("POST", "/api/logout"), ("POST", "/api/setup-2fa/generate"),
    ("POST", "/api/force-reset-password"), ("POST", "/api/user/1/reset-2fa"), ("POST", "/api/no-such-route"),
])
def test_csrf_required_on_every_writing_method(sim, method, path):
    s = login(sim)
    for header in (None, "", "wrong-value", s.csrf("csrf_refresh_token")):
        headers = {} if header is None else {"X-XSRF-TOKEN": header}
        r = requests.request(method, sim.root + path, json={}, headers=headers,
                             cookies={"access_token_cookie": s.cookies.get("access_token_cookie", path="/")})
        assert_error(r, 422, "CSRF.Invalid")
        assert r.json()["Message"] == "Missing or invalid CSRF token"
    # The session survived: the write-free routes still work and the right header passes the CSRF check.
    assert s.get("/api/profile").status_code == 200
    r = s.request(method, path, json={})
    assert r.status_code != 422, r.text


def test_csrf_not_needed_on_reads(sim, svc):
    r = requests.get(sim.base + "/profile",
                     cookies={"access_token_cookie": svc.cookies.get("access_token_cookie", path="/")})
    assert r.status_code == 200


def test_csrf_of_another_session_is_refused(sim):
    a, b = login(sim), login(sim)
    r = a.post("/api/setup-2fa/generate", headers={"X-XSRF-TOKEN": b.csrf()})
    assert_error(r, 422, "CSRF.Invalid")


# ---------------------------------------------------------------------------------------------------------
# Privileges (checked by the tenant behind the transport)

def test_viewer_gets_403_on_writes(sim):
    viewer = login(sim, "viewer@acme.example", "viewer-password")
    assert viewer.get("/api/item-master").status_code == 200
    r = viewer.post("/api/item-master", json={"Item Number": "VIEWER-ITEM", "Item Description": "x"})
    assert_error(r, 403, "User.NotPrivileged")
    assert r.json()["Message"] == "Not Privileged for this action"
    assert_error(viewer.post("/api/force-reset-password", json={"user_id": 1}), 403, "User.NotPrivileged")
    assert_error(viewer.post("/api/user/1/reset-2fa"), 403, "User.NotPrivileged")


# ---------------------------------------------------------------------------------------------------------
# Refresh and logout

def test_refresh_takes_only_the_refresh_csrf_token(sim):
    s = login(sim)
    old_access = s.cookies.get("access_token_cookie", path="/")
    old_csrf = s.csrf()
    assert_error(s.post("/api/token-refresh"), 422, "CSRF.Invalid")   # KnoscSession sends the access CSRF token
    assert_error(s.post("/api/token-refresh", headers={"X-XSRF-TOKEN": ""}), 422, "CSRF.Invalid")
    r = s.refresh()
    assert r.status_code == 200, r.text
    cookies = set_cookies(r)
    assert len(cookies) == 2
    assert re.fullmatch(r"access_token_cookie=[\w.-]+; HttpOnly; SameSite=Lax; Path=/",
                        cookie_named(r, "access_token_cookie"))
    assert re.fullmatch(r"csrf_access_token=[\w-]+; SameSite=Lax; Path=/", cookie_named(r, "csrf_access_token"))
    new_access = s.cookies.get("access_token_cookie", path="/")
    assert new_access != old_access and s.csrf() != old_csrf
    assert s.get("/api/profile").status_code == 200
    # The new CSRF value must be used from now on.
    assert_error(s.post("/api/setup-2fa/generate", headers={"X-XSRF-TOKEN": old_csrf}), 422, "CSRF.Invalid")
    assert s.post("/api/setup-2fa/generate").status_code == 200


def test_refresh_without_refresh_cookie(sim, svc):
    r = requests.post(sim.base + "/token-refresh", headers={"X-XSRF-TOKEN": svc.csrf("csrf_refresh_token")})
    assert_error(r, 401, "Token.Missing")


def test_refresh_with_access_token_is_refused(sim, svc):
    access = svc.cookies.get("access_token_cookie", path="/")
    r = requests.post(sim.base + "/token-refresh", cookies={"refresh_token_cookie": access},
                      headers={"X-XSRF-TOKEN": svc.csrf()})
    assert_error(r, 401, "Token.Invalid")


def test_logout(sim):
    s = login(sim)
    access = s.cookies.get("access_token_cookie", path="/")
    refresh = [c.value for c in s.cookies if c.name == "refresh_token_cookie"][0]
    csrf_refresh = s.csrf("csrf_refresh_token")
    r = s.post("/api/logout")
    assert r.status_code == 200
    assert set_cookies(r) == ["access_token_cookie=; Expires=Thu, 01 Jan 1970 00:00:00 GMT",
                              "refresh_token_cookie=; Expires=Thu, 01 Jan 1970 00:00:00 GMT"]
    # The session is gone server-side, whatever the client's cookie jar kept.
    assert_error(requests.get(sim.base + "/profile", cookies={"access_token_cookie": access}), 401, "Token.Invalid")
    r = requests.post(sim.base + "/token-refresh", cookies={"refresh_token_cookie": refresh},
                      headers={"X-XSRF-TOKEN": csrf_refresh})
    assert_error(r, 401, "Token.Invalid")
    # Other sessions of the same user are unaffected.
    other = login(sim)
    assert other.get("/api/profile").status_code == 200


def test_logout_needs_a_session(sim):
    assert_error(requests.post(sim.base + "/logout"), 401, "Token.Missing")


# ---------------------------------------------------------------------------------------------------------
# Two-factor authentication

def test_2fa_login(sim):
    r = requests.post(sim.base + "/authenticate", json={"username": "twofa@acme.example", "password": "twofa-password"})
    assert r.status_code == 200
    assert r.json() == {"requires_2fa": True}
    assert set_cookies(r) == []
    r = requests.post(sim.base + "/verify-2fa", json={"username": "twofa@acme.example", "totp_code": "000000"})
    if r.status_code == 200:  # one chance in a million that 000000 is the current code
        pytest.skip("000000 happened to be valid")
    assert_error(r, 401, "2FA.InvalidCode")
    assert r.json()["Message"] == "Invalid or expired TOTP code."
    s = KnoscSession(sim)
    r = s.post("/api/verify-2fa", json={"username": "twofa@acme.example", "totp_code": pyotp.TOTP(TWOFA_SECRET).now()})
    assert r.status_code == 200, r.text
    assert r.json() == {"login": True}
    assert re.fullmatch(r"access_token_cookie=[\w.-]+; HttpOnly; SameSite=Lax; Path=/",
                        cookie_named(r, "access_token_cookie"))
    assert re.fullmatch(r"csrf_access_token=[\w-]+; SameSite=Lax; Path=/", cookie_named(r, "csrf_access_token"))
    assert s.get("/api/profile").json()["data"]["Username"] == "twofa@acme.example"
    # The password step is spent: a second verify without it fails.
    r = requests.post(sim.base + "/verify-2fa",
                      json={"username": "twofa@acme.example", "totp_code": pyotp.TOTP(TWOFA_SECRET).now()})
    assert_error(r, 401, "2FA.InvalidCode")


def test_2fa_code_alone_is_not_enough(sim):
    r = requests.post(sim.base + "/verify-2fa",
                      json={"username": "twofa@acme.example", "totp_code": pyotp.TOTP(TWOFA_SECRET).now()})
    assert_error(r, 401, "2FA.InvalidCode")


def test_setup_2fa_then_admin_reset(sim):
    viewer = login(sim, "viewer@acme.example", "viewer-password")
    viewer_id = user_id(viewer)
    r = viewer.post("/api/setup-2fa/generate")
    assert r.status_code == 200
    body = r.json()
    assert re.fullmatch(r"[A-Z2-7]{16,}", body["secret"])
    assert body["qr_code"].startswith("data:image/png;base64,")
    # Activation needs a code of the generated secret.
    bad = viewer.post("/api/setup-2fa/activate", json={"totp_code": pyotp.TOTP(TWOFA_SECRET).now()})
    assert_error(bad, 400, "2FA.InvalidCode")
    assert bad.json()["Message"] == "Invalid TOTP code."
    r = viewer.post("/api/setup-2fa/activate", json={"totp_code": pyotp.TOTP(body["secret"]).now()})
    assert r.status_code == 200
    assert r.json() == {"message": "Two-factor authentication enabled."}
    r = requests.post(sim.base + "/authenticate", json={"username": "viewer@acme.example", "password": "viewer-password"})
    assert r.json() == {"requires_2fa": True}
    r = requests.post(sim.base + "/verify-2fa",
                      json={"username": "viewer@acme.example", "totp_code": pyotp.TOTP(body["secret"]).now()})
    assert r.status_code == 200
    # Resetting 2FA is for administrators.
    assert_error(viewer.post("/api/user/%d/reset-2fa" % viewer_id), 403, "User.NotPrivileged")
    admin = login(sim, "admin@acme.example", "admin-password")
    assert_error(admin.post("/api/user/999999/reset-2fa"), 400, "User.NotFound")
    assert admin.post("/api/user/%d/reset-2fa" % viewer_id).status_code == 200
    login(sim, "viewer@acme.example", "viewer-password")


# ---------------------------------------------------------------------------------------------------------
# First sign-in and passwords

def test_first_signin(sim):
    r = requests.post(sim.base + "/authenticate", json={"username": "newbie@acme.example", "password": "newbie-password"})
    assert r.status_code == 200
    body = r.json()
    assert body["first_signin"] is True and isinstance(body["session_token"], str)
    assert set_cookies(r) == []
    token = body["session_token"]
    short = requests.post(sim.base + "/first-signin", json={"session_token": token, "new_password": "short"})
    assert_error(short, 400, "User.PasswordTooShort")
    bad = requests.post(sim.base + "/first-signin", json={"session_token": "x" + token, "new_password": "long-enough-1"})
    assert_error(bad, 401, "Token.Invalid")
    # An access token is not a first sign-in token.
    svc = login(sim)
    other = requests.post(sim.base + "/first-signin", json={
        "session_token": svc.cookies.get("access_token_cookie", path="/"), "new_password": "long-enough-1"})
    assert_error(other, 401, "Token.Invalid")
    s = KnoscSession(sim)
    r = s.post("/api/first-signin", json={"session_token": token, "new_password": "newbie-password-2"})
    assert r.status_code == 200 and r.json() == {"login": True}
    assert re.fullmatch(r"access_token_cookie=[\w.-]+; HttpOnly; SameSite=Lax; Path=/",
                        cookie_named(r, "access_token_cookie"))
    assert re.fullmatch(r"csrf_access_token=[\w-]+; SameSite=Lax; Path=/", cookie_named(r, "csrf_access_token"))
    assert s.get("/api/profile").json()["data"]["Username"] == "newbie@acme.example"
    # Used once, the session token is spent; the old password is gone, the new one logs in directly.
    again = requests.post(sim.base + "/first-signin", json={"session_token": token, "new_password": "another-pass-3"})
    assert again.status_code == 401
    assert_error(requests.post(sim.base + "/authenticate", json={
        "username": "newbie@acme.example", "password": "newbie-password"}), 401, "User.InvalidCredentials")
    login(sim, "newbie@acme.example", "newbie-password-2")


def test_forgot_and_reset_password(sim):
    old = login(sim, "wh1@acme.example", "wh1-password")
    expected = {"message": "If an account with that email exists, a reset link has been sent."}
    for email in ("nobody@acme.example", "wh1@acme.example"):
        r = requests.post(sim.base + "/forgot-password", json={"email": email})
        assert r.status_code == 200 and r.json() == expected
    assert sim.control_get("/_sim/reset-token", params={"email": "nobody@acme.example"}).status_code == 404
    r = sim.control_get("/_sim/reset-token", params={"email": "wh1@acme.example"})
    assert r.status_code == 200
    token = r.json()["token"]
    assert_error(requests.post(sim.base + "/reset-password", json={"session_token": token, "new_password": "short"}),
                 400, "User.PasswordTooShort")
    assert_error(requests.post(sim.base + "/reset-password",
                               json={"session_token": "wrong", "new_password": "long-enough-1"}),
                 400, "User.InvalidResetToken")
    r = requests.post(sim.base + "/reset-password", json={"session_token": token, "new_password": "wh1-password-2"})
    assert r.status_code == 200 and r.json() == {"message": "Password updated successfully."}
    # The token is single-use, the old password and the sessions issued before the change are dead.
    assert requests.post(sim.base + "/reset-password",
                         json={"session_token": token, "new_password": "wh1-password-3"}).status_code == 400
    assert_error(old.get("/api/profile"), 401, "Token.Invalid")
    assert_error(requests.post(sim.base + "/authenticate", json={
        "username": "wh1@acme.example", "password": "wh1-password"}), 401, "User.InvalidCredentials")
    s = login(sim, "wh1@acme.example", "wh1-password-2")
    # Put the seeded password back for the tests that follow.
    requests.post(sim.base + "/forgot-password", json={"email": "wh1@acme.example"})
    token = sim.control_get("/_sim/reset-token", params={"email": "wh1@acme.example"}).json()["token"]
    assert requests.post(sim.base + "/reset-password",
                         json={"session_token": token, "new_password": "wh1-password"}).status_code == 200
    assert_error(s.get("/api/profile"), 401, "Token.Invalid")


def test_force_reset_password(sim):
    target = login(sim, "wh1@acme.example", "wh1-password")
    target_id = user_id(target)
    viewer = login(sim, "viewer@acme.example", "viewer-password")
    assert_error(viewer.post("/api/force-reset-password", json={"user_id": target_id}), 403, "User.NotPrivileged")
    admin = login(sim, "admin@acme.example", "admin-password")
    assert_error(admin.post("/api/force-reset-password", json={"user_id": 999999}), 400, "User.NotFound")
    assert_error(admin.post("/api/force-reset-password", json={"user_id": "x"}), 400, "JSON.Invalid")
    r = admin.post("/api/force-reset-password", json={"user_id": target_id})
    assert r.status_code == 200 and r.json() == {"message": "Password reset initiated for user."}
    assert_error(target.get("/api/profile"), 401, "Token.Invalid")
    r = requests.post(sim.base + "/authenticate", json={"username": "wh1@acme.example", "password": "wh1-password"})
    body = r.json()
    assert body["first_signin"] is True
    s = KnoscSession(sim)
    assert s.post("/api/first-signin", json={"session_token": body["session_token"],
                                             "new_password": "wh1-password"}).status_code == 200
    assert s.get("/api/profile").status_code == 200
    # Users / Edit is enough as well: the service account has it.
    svc = login(sim)
    assert svc.post("/api/force-reset-password", json={"user_id": 999999}).status_code == 400


# ---------------------------------------------------------------------------------------------------------
# Lifetimes and lockout, with short values

@pytest.fixture(scope="module")
def short():
    proc = start_sim("--access-ttl", "1", "--refresh-ttl", "3", "--lockout-base", "1")
    yield proc
    proc.stop()


def test_access_token_expires_and_refreshes(short):
    s = login(short)
    assert s.get("/api/profile").status_code == 200
    r = wait_until(lambda: (lambda r: r if r.status_code == 401 else None)(s.get("/api/profile")), timeout=5)
    assert_error(r, 401, "Token.Expired")
    assert r.json()["Message"] == "Token has expired"
    # A write with a correct CSRF header also says expired (the token is checked first).
    assert_error(s.post("/api/setup-2fa/generate"), 401, "Token.Expired")
    assert s.refresh().status_code == 200
    assert s.get("/api/profile").status_code == 200


def test_refresh_token_expires(short):
    s = login(short)
    started = time.monotonic()
    r = wait_until(lambda: (lambda r: r if r.status_code == 401 else None)(s.refresh()), timeout=8)
    assert time.monotonic() - started > 2.0
    assert_error(r, 401, "Token.Expired")


def test_expire_tokens_control(short):
    s = login(short)
    assert s.get("/api/profile").status_code == 200
    assert short.control_post("/_sim/expire-tokens").status_code == 200
    assert_error(s.get("/api/profile"), 401, "Token.Expired")
    assert_error(s.refresh(), 401, "Token.Expired")
    fresh = login(short)
    assert fresh.get("/api/profile").status_code == 200


def test_lockout_with_growing_backoff(short):
    user, good = "viewer@acme.example", "viewer-password"

    def attempt(password):
        return requests.post(short.base + "/authenticate", json={"username": user, "password": password})

    for _ in range(3):
        assert_error(attempt("wrong"), 401, "User.InvalidCredentials")
    started = time.monotonic()
    r = attempt(good)                       # locked: even the right password is refused
    assert_error(r, 429, "User.Locked")
    assert r.json()["Message"] == "Account temporarily locked"
    assert r.headers["Retry-After"] == "1"
    r = wait_until(lambda: (lambda r: r if r.status_code != 429 else None)(attempt("wrong")), timeout=5)
    assert time.monotonic() - started >= 0.9
    assert_error(r, 401, "User.InvalidCredentials")   # 4th consecutive failure: locked for 2 s
    r = attempt(good)
    assert_error(r, 429, "User.Locked")
    assert r.headers["Retry-After"] == "2"
    started = time.monotonic()
    r = wait_until(lambda: (lambda r: r if r.status_code != 429 else None)(attempt(good)), timeout=6)
    assert r.status_code == 200 and r.json() == {"login": True}
    assert time.monotonic() - started >= 1.0
    # Success resets the count: two failures do not lock.
    assert attempt("wrong").status_code == 401
    assert attempt("wrong").status_code == 401
    assert attempt(good).status_code == 200


def test_lockout_leaves_other_accounts_alone(short):
    for _ in range(3):
        requests.post(short.base + "/authenticate", json={"username": "admin@acme.example", "password": "x"})
    assert requests.post(short.base + "/authenticate",
                         json={"username": "admin@acme.example", "password": "admin-password"}).status_code == 429
    login(short, "sync@acme.example", "sync-password")


def test_unknown_user_is_never_locked(short):
    for _ in range(5):
        r = requests.post(short.base + "/authenticate", json={"username": "ghost@acme.example", "password": "x"})
        assert_error(r, 401, "User.InvalidCredentials")


def test_every_response_has_a_date_header(sim):
    for r in (requests.get(sim.base + "/profile"),
              requests.post(sim.base + "/authenticate", data=b"{"),
              requests.get(sim.root + "/"),
              sim.control_get("/_sim/health")):
        assert re.fullmatch(r"\w{3}, \d{2} \w{3} \d{4} \d{2}:\d{2}:\d{2} GMT", r.headers["Date"]), r.headers
        assert "Content-Length" in r.headers


def test_account_changes_invalidate_tokens(sim):
    admin = login(sim, "admin@acme.example", "admin-password")
    roles = {r["Role Name"]: r["id"] for r in admin.get("/api/role", params={"page_size": 100}).json()["data"]["rows"]}
    r = admin.post("/api/user", json={"User Fullname": "Temp User", "Username": "temp@acme.example",
                                      "User Email": "temp@acme.example", "Role Id": roles["Viewer"],
                                      "password": "temp-password"})
    assert r.status_code == 200, r.text
    uid = r.json()["id"]
    # A new account starts with its first sign-in pending.
    body = requests.post(sim.base + "/authenticate",
                         json={"username": "temp@acme.example", "password": "temp-password"}).json()
    s = KnoscSession(sim)
    assert s.post("/api/first-signin", json={"session_token": body["session_token"],
                                             "new_password": "temp-password-2"}).status_code == 200
    assert s.get("/api/profile").status_code == 200
    # A change that is not password, role or status leaves tokens alone.
    assert admin.put("/api/user/%d" % uid, json={"User Fullname": "Renamed User"}).status_code == 200
    assert s.get("/api/profile").status_code == 200
    assert admin.put("/api/user/%d" % uid, json={"Role Id": roles["WH-01 Planner"]}).status_code == 200
    assert_error(s.get("/api/profile"), 401, "Token.Invalid")
    s = login(sim, "temp@acme.example", "temp-password-2")
    assert s.get("/api/profile").json()["data"]["Role Name"] == "WH-01 Planner"
    # Deleting a user makes it Inactive: its sessions die and it cannot log in.
    assert admin.delete("/api/user/%d" % uid).status_code == 200
    assert_error(s.get("/api/profile"), 401, "Token.Invalid")
    assert_error(requests.post(sim.base + "/authenticate", json={
        "username": "temp@acme.example", "password": "temp-password-2"}), 401, "User.InvalidCredentials")
