"""Signing in, sessions, CSRF and roles, against the real console app."""

from __future__ import annotations

import logging

import pytest
from starlette.routing import Mount

from tests.bot.web.conftest import ADMIN, ADMIN_PW, REVIEWER, REVIEWER_PW
from tests.conftest import wait_for

# /metrics is public like the health checks: Prometheus scrapes it, and no label carries user data.
PUBLIC = {"/healthz", "/readyz", "/metrics", "/", "/chat", "/api/ask", "/api/vote", "/login", "/logout"}


def all_routes(routes):
    for route in routes:
        inner = getattr(route, "original_router", None)  # FastAPI >= 0.165 wraps included routers
        if inner is not None:
            yield from all_routes(inner.routes)
        else:
            yield route


def console_routes(app) -> list[tuple[str, str]]:
    """(method, concrete path) of every console route, path parameters filled in."""
    found = []
    for route in all_routes(app.routes):
        if isinstance(route, Mount) or not getattr(route, "methods", None):
            continue
        path = route.path.replace("{answer_id}", "abc123").replace("{name}", "dpo-20260101T000000Z")
        path = path.replace("{file}", "train.trl.jsonl")
        for method in sorted(route.methods or []):
            if method != "HEAD":
                found.append((method, path))
    return found


async def test_signed_out_requests_to_every_review_and_admin_url_are_redirected_or_refused(lore):
    routes = [(m, p) for m, p in console_routes(lore.app) if p not in PUBLIC]
    assert {p for _m, p in routes} >= {
        "/review",
        "/review/abc123",
        "/admin/sources",
        "/admin/reindex",
        "/admin/sync-status",
        "/admin/exports",
        "/admin/exports/status",
    }
    client = lore.client()
    token = await client.csrf()  # a valid CSRF token: only the missing sign-in may refuse these
    for method, path in routes:
        if method == "GET":
            page = await client.http.get(path)
            assert page.status_code == 303 and page.headers["location"].startswith("/login?next="), path
            api = await client.http.get(path, headers={"Accept": "application/json"})
            assert api.status_code == 401, path
        else:
            response = await client.http.request(
                method, path, data={"csrf_token": token, "action": "approve", "version": "0", "format": "dpo"}
            )
            assert response.status_code == 401, (method, path, response.text)
    assert lore.services.tasks.sync_status().running == {}  # nothing was queued


async def test_sign_in_goes_where_it_was_asked_and_never_off_site(lore):
    client = lore.client()
    page = await client.http.get("/review?vote=down")
    assert page.headers["location"] == "/login?next=/review%3Fvote%3Ddown"
    await client.page("/login?next=/review%3Fvote%3Ddown")
    response = await client.form(
        "/login", {"username": ADMIN, "password": ADMIN_PW, "next": "/review?vote=down"}
    )
    assert response.status_code == 303 and response.headers["location"] == "/review?vote=down"
    assert (await client.http.get("/review?vote=down")).status_code == 200

    for evil in ("https://evil.example/", "//evil.example/x", "/\\evil.example"):
        other = lore.client()
        await other.page("/login")
        response = await other.form("/login", {"username": ADMIN, "password": ADMIN_PW, "next": evil})
        assert response.headers["location"] == "/review", evil


async def test_wrong_passwords_are_refused_then_throttled_and_never_logged(make_lore, caplog):
    lore = make_lore(web={"login_attempts": 3, "login_window": 60})
    lore.add_user(REVIEWER, REVIEWER_PW)
    client = lore.client()
    await client.page("/login")
    caplog.set_level(logging.DEBUG)
    for _ in range(3):
        response = await client.form("/login", {"username": REVIEWER, "password": "wrong-password-123"})
        assert response.status_code == 401 and "Wrong username or password" in response.text
    response = await client.form("/login", {"username": REVIEWER, "password": REVIEWER_PW})
    assert response.status_code == 429 and "Too many failed sign-ins" in response.text
    unknown = await client.form("/login", {"username": "nobody", "password": "whatever-123"})
    assert unknown.status_code == 401  # an unknown user looks like a wrong password
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "wrong-password-123" not in logged and REVIEWER_PW not in logged
    assert "failed sign-in" in logged


async def test_session_cookie_is_httponly_lax_and_secure_when_configured(make_lore):
    for secure in (False, True):
        lore = make_lore(web={"secure_cookies": secure})
        lore.add_user(f"u{int(secure)}", REVIEWER_PW)
        client = lore.client(
            "https://lore.test" if secure else "http://lore.test"
        )  # Secure cookies need https
        await client.page("/login")
        response = await client.form("/login", {"username": f"u{int(secure)}", "password": REVIEWER_PW})
        cookie = response.headers["set-cookie"].lower()
        assert cookie.startswith("lore_session=") and "httponly" in cookie and "samesite=lax" in cookie
        assert ("secure" in cookie.split("; ")) is secure
        assert REVIEWER_PW not in response.headers["set-cookie"]
        assert (lore.settings.data_dir / "session.key").stat().st_mode & 0o777 == 0o600


async def test_forms_and_api_calls_without_the_csrf_token_are_refused(lore):
    client = await lore.signed_in(ADMIN, ADMIN_PW)
    answer = await client.ask("how do I set up the VPN?")
    await wait_for(lambda: lore.interaction(answer["answer_id"]), what="the interaction stored")
    # A form without a token, with a wrong token, and a JSON call without the header.
    no_token = await client.form(
        f"/review/{answer['answer_id']}", {"action": "approve", "version": 0}, csrf=False
    )
    assert no_token.status_code == 403 and "CSRF" in no_token.text
    wrong = await client.http.post(
        f"/review/{answer['answer_id']}", data={"action": "approve", "version": 0, "csrf_token": "x" * 43}
    )
    assert wrong.status_code == 403
    assert (await client.form("/admin/reindex", {}, csrf=False)).status_code == 403
    assert (await client.form("/admin/exports", {"format": "sft"}, csrf=False)).status_code == 403
    assert (await client.form("/logout", {}, csrf=False)).status_code == 403
    vote = await client.json("/api/vote", {"answer_id": answer["answer_id"], "value": "up"}, csrf=False)
    assert vote.status_code == 403
    ask = await client.json("/api/ask", {"question": "anything?"}, csrf=False)
    assert ask.status_code == 403
    # A login form posted from another site is refused too, even with a token.
    cross = await client.http.post(
        "/login",
        data={"username": ADMIN, "password": ADMIN_PW, "csrf_token": await client.csrf()},
        headers={"Origin": "https://evil.example"},
    )
    assert cross.status_code == 403
    # Nothing changed: the item is still new, and no export or sync started.
    page = await client.page(f"/review/{answer['answer_id']}")
    assert 'id="review-status">new<' in page.text
    assert not console_exports(lore) and lore.services.tasks.sync_status().running == {}
    # With the token, the same form works.
    ok = await client.form(f"/review/{answer['answer_id']}", {"action": "approve", "version": 0})
    assert ok.status_code == 303, ok.text


async def test_a_non_ascii_csrf_token_is_refused_like_any_wrong_token(lore):
    client = lore.client()
    await client.page("/chat")
    bad = "é" * 43
    as_header = await client.http.post(
        "/api/ask",
        json={"question": "anything?"},
        headers={"X-CSRF-Token": bad.encode(), "Accept": "application/json"},
    )
    assert as_header.status_code == 403 and "CSRF" in as_header.json()["error"]
    as_field = await client.http.post(
        "/login", data={"username": ADMIN, "password": ADMIN_PW, "csrf_token": bad}
    )
    assert as_field.status_code == 403 and "Traceback" not in as_field.text


def console_exports(lore) -> list:
    return list(lore.settings.datasets.directory(lore.settings.data_dir).glob("*"))


async def test_a_reviewer_cannot_reach_admin_actions(lore):
    client = await lore.signed_in(REVIEWER, REVIEWER_PW)
    assert (await client.http.get("/review")).status_code == 200
    for path in ("/admin/sources", "/admin/exports", "/admin/sync-status", "/admin/exports/status"):
        assert (await client.http.get(path)).status_code == 403, path
    assert (await client.form("/admin/reindex", {"source": "handbook"})).status_code == 403
    assert (await client.form("/admin/exports", {"format": "sft"})).status_code == 403
    page = await client.http.get("/review")
    assert "/admin/sources" not in page.text  # and the links are not shown either
    assert lore.services.tasks.sync_status().running == {} and not console_exports(lore)


async def test_sign_out_ends_the_session_and_removed_users_lose_access_at_once(lore):
    from feedback.users import remove_user

    client = await lore.signed_in(REVIEWER, REVIEWER_PW)
    assert (await client.form("/logout", {})).status_code == 303
    assert (await client.http.get("/review")).status_code == 303

    client = await lore.signed_in(REVIEWER, REVIEWER_PW)
    remove_user(lore.db.sessions, REVIEWER)
    assert (await client.http.get("/review")).status_code == 303


@pytest.mark.parametrize("private", [False, True])
async def test_the_chat_is_public_unless_made_private(make_lore, private):
    lore = make_lore(web={"private_chat": private})
    lore.add_user(REVIEWER, REVIEWER_PW)
    client = lore.client()
    page = await client.page("/chat")
    if not private:
        assert page.status_code == 200
        answer = await client.ask("how many leave days do I get?")
        assert answer["sources"]
        return
    assert page.status_code == 303 and page.headers["location"].startswith("/login")
    await client.page("/login")
    refused = await client.json("/api/ask", {"question": "how many leave days do I get?"})
    assert refused.status_code == 401
    client = await lore.signed_in(REVIEWER, REVIEWER_PW)
    assert (await client.page("/chat")).status_code == 200
    assert (await client.ask("how many leave days do I get?"))["sources"]


async def test_health_and_readiness_are_public(lore):
    client = lore.client()
    assert (await client.http.get("/healthz")).json()["status"] == "ok"
    ready = await client.http.get("/readyz")
    assert ready.status_code == 200, ready.text
    body = ready.json()
    assert body["status"] == "ready" and body["failing"] == []
    detail = body["checks"]["database"]["detail"]
    assert set(body["checks"]) == {"index", "database"} and detail == f"ok (migration {lore.db.head()})"
