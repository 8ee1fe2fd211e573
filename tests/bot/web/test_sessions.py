"""Console sessions end when they should, server-side: a copied cookie is no key after sign-out,
a password or role reset, `lore users sessions revoke` or removing the user, and a removed user's
cookie never signs in whoever is created next. Real app, real cookies, the real `lore users`."""

from __future__ import annotations

import json

from tests.bot.web.conftest import ADMIN, ADMIN_PW, REVIEWER, REVIEWER_PW


def copy_of(lore, client):
    """Another browser holding a copy of `client`'s cookie."""
    thief = lore.client()
    thief.http.cookies.update(client.http.cookies)
    return thief


def lore_user(lore, name: str, role: str) -> tuple[str, str]:
    password = f"{name}-password"
    lore.add_user(name, password, role)
    return name, password


async def opens(client, path: str = "/review") -> bool:
    response = await client.http.get(path)
    assert response.status_code in (200, 303, 403), (path, response.status_code)
    return response.status_code == 200


async def test_a_removed_users_cookie_does_not_open_admin_pages_as_the_next_user_created(lore):
    mallory = await lore.signed_in(*lore_user(lore, "mallory", "reviewer"))
    saved = copy_of(lore, mallory)
    assert await opens(saved, "/review") and not await opens(saved, "/admin/sources")

    removed = lore.cli("users", "remove", "mallory")
    assert removed.exit_code == 0, removed.output
    added = lore.cli("users", "add", "nina", "--role", "admin", "--password-stdin", input="nina-password\n")
    assert added.exit_code == 0, added.output

    for path in ("/admin/sources", "/admin/exports", "/review"):
        response = await saved.http.get(path)
        assert response.status_code == 303 and response.headers["location"].startswith("/login"), path
    nina = await lore.signed_in("nina", "nina-password")
    assert await opens(nina, "/admin/sources")


async def test_sign_out_ends_the_session_server_side_so_a_copied_cookie_stops_working(lore):
    client = await lore.signed_in(REVIEWER, REVIEWER_PW)
    copy = copy_of(lore, client)
    other = await lore.signed_in(REVIEWER, REVIEWER_PW)  # the same user in another browser
    assert await opens(copy)
    assert (await client.form("/logout", {})).status_code == 303
    assert not await opens(client)
    assert not await opens(copy)  # the copied cookie names a revoked session
    assert await opens(other)  # signing out ends this session, not every session of the user


async def test_a_password_or_role_reset_ends_every_session_of_that_user(lore):
    browsers = [await lore.signed_in(REVIEWER, REVIEWER_PW) for _ in range(2)]
    copies = [copy_of(lore, b) for b in browsers]
    admin = await lore.signed_in(ADMIN, ADMIN_PW)
    reset = lore.cli("users", "add", REVIEWER, "--reset", "--password-stdin", input="a new password\n")
    assert reset.exit_code == 0 and "their sessions have ended" in reset.output
    for client in browsers + copies:
        assert not await opens(client)
    assert await opens(admin)  # other users keep theirs

    again = await lore.signed_in(REVIEWER, "a new password")
    promoted = lore.cli(
        "users", "add", REVIEWER, "--role", "admin", "--reset", "--password-stdin", input="a new password\n"
    )
    assert promoted.exit_code == 0, promoted.output
    assert not await opens(again)  # a role change too: sign in again to get the new role
    assert await opens(await lore.signed_in(REVIEWER, "a new password"), "/admin/sources")


async def test_lore_users_sessions_revoke_ends_them_and_list_shows_them(lore):
    client = await lore.signed_in(REVIEWER, REVIEWER_PW)
    copy = copy_of(lore, client)
    listed = lore.cli("users", "sessions", "list", REVIEWER, "--json")
    assert listed.exit_code == 0, listed.output
    assert [s["state"] for s in json.loads(listed.stdout)] == ["active"]

    revoked = lore.cli("users", "sessions", "revoke", REVIEWER)
    assert revoked.exit_code == 0 and f"ended 1 session of {REVIEWER}" in revoked.output
    assert not await opens(client) and not await opens(copy)
    listed = lore.cli("users", "sessions", "list", REVIEWER, "--json")
    assert [s["state"] for s in json.loads(listed.stdout)] == ["ended (revoked)"]
