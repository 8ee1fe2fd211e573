"""Rate limits and sign-in throttling in the web console: the public chat limits each client
address (a new anonymous browser costs nothing, an address does), `X-Forwarded-For` counts only
from a configured proxy, and two replicas on one Redis share every budget (the core's per-person
limit, the address budget and failed sign-ins). Real apps, real Redis."""

from __future__ import annotations

import uuid

import pytest
from redis import Redis

from tests.bot.web.conftest import REDIS_URL, REVIEWER, REVIEWER_PW


async def ask_as_new_browser(lore, question: str = "how do I set up the VPN?", headers=None):
    """One question from a browser that never sends its cookie again (a fresh anonymous id)."""
    client = lore.client()
    await client.page("/chat")
    return await client.http.post(
        "/api/ask",
        json={"question": question},
        headers={"X-CSRF-Token": await client.csrf(), "Accept": "application/json", **(headers or {})},
    )


async def test_cookieless_clients_are_limited_by_their_address(make_lore):
    lore = make_lore(chat={"user_per_minute": 6, "channel_per_minute": 100}, web={"address_per_minute": 6})
    lore.add_user(REVIEWER, REVIEWER_PW)
    statuses = [(await ask_as_new_browser(lore)).status_code for _ in range(8)]
    assert statuses == [200] * 6 + [429] * 2
    refused = await ask_as_new_browser(lore)
    assert "asking faster than I can keep up" in refused.json()["error"]
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    # A signed-in person at the same address has their own budget.
    signed_in = await lore.signed_in(REVIEWER, REVIEWER_PW)
    assert (await signed_in.ask("how many leave days do I get?"))["sources"]


async def test_x_forwarded_for_counts_only_from_a_trusted_proxy(make_lore):
    spoofed = make_lore(data_dir="direct", web={"address_per_minute": 2})
    statuses = [
        (await ask_as_new_browser(spoofed, headers={"X-Forwarded-For": f"198.51.100.{i}"})).status_code
        for i in range(3)
    ]
    assert statuses == [200, 200, 429]  # the header is ignored: one address, the connection's

    proxied = make_lore(data_dir="proxied", web={"address_per_minute": 2, "trusted_proxies": ["127.0.0.0/8"]})
    statuses = [
        (await ask_as_new_browser(proxied, headers={"X-Forwarded-For": f"198.51.100.{i}"})).status_code
        for i in range(3)
    ]
    assert statuses == [200, 200, 200]  # three clients behind the proxy
    again = [
        (await ask_as_new_browser(proxied, headers={"X-Forwarded-For": "198.51.100.0"})).status_code
        for _ in range(2)
    ]
    assert again == [200, 429]  # 198.51.100.0 asked twice before: its own budget is spent


@pytest.fixture
def replicas(make_lore, tmp_path):
    """`replicas(**settings)` -> two consoles as two replicas: own data directories and answer
    engines, one Redis (a test-only prefix), one feedback database and one session key."""
    prefix = f"lore-test-{uuid.uuid4().hex[:10]}:"

    def make(**over):
        shared = {
            "redis": {"url": REDIS_URL, "prefix": prefix},
            "database": {"url": f"sqlite:///{tmp_path / 'shared-feedback.sqlite3'}"},
        }
        web = {"session_secret": "one key for every replica " * 2, **over.pop("web", {})}
        return [make_lore(data_dir=name, web=web, **shared, **over) for name in ("replica-a", "replica-b")]

    yield make
    redis = Redis.from_url(REDIS_URL)
    keys = list(redis.scan_iter(match=f"{prefix}*", count=1000))
    if keys:
        redis.delete(*keys)
    redis.close()


@pytest.mark.redis
async def test_two_replicas_on_one_redis_share_each_persons_budget(replicas):
    a, b = replicas(chat={"user_per_minute": 4, "channel_per_minute": 100})
    browser = a.client()
    await browser.page("/chat")
    on_b = b.client()  # the same browser, its next requests balanced onto the other replica
    for _ in range(2):
        assert (await browser.json("/api/ask", {"question": "how do I set up the VPN?"})).status_code == 200
        on_b.http.cookies.update(browser.http.cookies)
        on_b.token = browser.token
        assert (await on_b.json("/api/ask", {"question": "how many leave days?"})).status_code == 200
    refused = await browser.json("/api/ask", {"question": "and the per diem?"})
    assert refused.status_code == 429 and "you're asking faster" in refused.json()["error"]


@pytest.mark.redis
async def test_two_replicas_on_one_redis_share_the_address_budget(replicas):
    a, b = replicas(web={"address_per_minute": 5})
    statuses = [(await ask_as_new_browser([a, b][i % 2])).status_code for i in range(8)]
    assert statuses == [200] * 5 + [429] * 3


@pytest.mark.redis
async def test_two_replicas_on_one_redis_count_the_same_failed_sign_ins(replicas):
    a, b = replicas(web={"login_attempts": 3, "login_window": 60})
    a.add_user(REVIEWER, REVIEWER_PW)  # one database: the user exists on both
    for lore in (a, a, b):
        client = lore.client()
        await client.page("/login")
        failed = await client.form("/login", {"username": REVIEWER, "password": "wrong-password-123"})
        assert failed.status_code == 401
    client = a.client()
    await client.page("/login")
    throttled = await client.form("/login", {"username": REVIEWER, "password": REVIEWER_PW})
    assert throttled.status_code == 429 and "Too many failed sign-ins" in throttled.text


async def test_lore_serve_believes_x_forwarded_for_only_from_trusted_proxies(lore_server):
    """Through `lore serve`'s uvicorn, a local connection's X-Forwarded-For is not believed either
    (uvicorn alone would trust any from 127.0.0.1)."""
    import httpx

    base, _settings, _services = await lore_server(web={"address_per_minute": 2})
    statuses = []
    for i in range(3):
        async with httpx.AsyncClient(base_url=base) as http:
            page = await http.get("/chat")
            token = page.text.split('name="csrf-token" content="', 1)[1].split('"', 1)[0]
            response = await http.post(
                "/api/ask",
                json={"question": "how do I set up the VPN?"},
                headers={"X-CSRF-Token": token, "X-Forwarded-For": f"198.51.100.{i}"},
            )
            statuses.append(response.status_code)
    assert statuses == [200, 200, 429]


async def test_lore_serve_refuses_an_oversized_body_declared_or_streamed(lore_server):
    """Any body over MAX_BODY gets 413 before a route holds it: a JSON question with its length
    declared, a chunked one with none (counted as it streams), and one under /slack/ (which the
    CSRF check exempts; refused before any routing). The server keeps answering afterwards."""
    import httpx

    from bot.web.security import MAX_BODY

    base, _settings, _services = await lore_server()
    async with httpx.AsyncClient(base_url=base) as http:
        page = await http.get("/chat")
        token = page.text.split('name="csrf-token" content="', 1)[1].split('"', 1)[0]
        headers = {"X-CSRF-Token": token, "Accept": "application/json", "Content-Type": "application/json"}
        big = b'{"question": "' + b"a" * MAX_BODY + b'"}'
        declared = await http.post("/api/ask", content=big, headers=headers)
        assert declared.status_code == 413
        assert "request body too large" in declared.json()["error"]

        async def chunks():
            for start in range(0, len(big), 64 * 1024):
                yield big[start : start + 64 * 1024]

        streamed = await http.post("/api/ask", content=chunks(), headers=headers)
        assert streamed.request.headers.get("transfer-encoding") == "chunked"
        assert "content-length" not in streamed.request.headers
        assert streamed.status_code == 413, streamed.text

        slack = await http.post("/slack/events", content=big, headers={"Content-Type": "application/json"})
        assert slack.status_code == 413

        small = await http.post("/api/ask", json={"question": "how do I set up the VPN?"}, headers=headers)
        assert small.status_code == 200 and small.json()["sources"]
