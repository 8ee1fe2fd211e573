"""`lore ask`: an answer from the index, unfiltered for the admin at the keyboard, or with `--as`
exactly as Lore would give it to someone else, somewhere else.

`--as PRINCIPAL` picks whose rights count (`AccessPolicy.principal`: a person such as `slack:U…`
or `web:alice`, a group, a channel, or `public`; repeated, one person's several principals, as
Slack's directory would add their user groups and email); `--where` picks the place, which
decides the audience the way the chat core does (bot/core/access.py, docs/permissions.md):

- `dm` (the default): the principal's own audience, as in a DM, a private `/ask` or the web chat;
- `channel:ID`: the channel's audience (public, plus what a rule grants that channel), the
  channel's `channel_sources` scope, and the principal's audience as the wider one, so
  `withheld` counts what "Answer privately" would add.

When Slack is configured, a single `--as slack:U…` is looked up the way the Slack adapter looks
up an asker (bot/slack/directory.py: the user groups and email `[groups]` names), and a
`--where channel:slack:C…` shared with another organisation gets public content only, or the
refusal, as in chat.

In a DM Lore counts nothing as left out, but an admin checking a rule wants to know, so `--as`
with `--where dm` counts against everything `lore.toml` grants (`AccessPolicy.everything`;
`withheld`: matches in the unfiltered top-k the principal may not read). The answer itself never
depends on `wider`.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any

import typer
from pydantic import TypeAdapter, ValidationError
from rich.markup import escape

from bot.commands._common import err, error, knowledge_for, out, settings_of
from bot.commands.index import _nothing_indexed
from config import Settings
from config.settings import Grant
from knowledge.access import PUBLIC, PUBLIC_AUDIENCE, AccessPolicy, Audience

if TYPE_CHECKING:
    from bot.slack.directory import SlackDirectory

__all__ = ["View", "ask", "register", "view_for"]

WHERE_HELP = (
    "Where the question is asked: dm (the default: the principal's own rights, as in a DM, a private "
    "/ask or the web chat) or channel:ID (channel:slack:C…, channel:discord:<id>; a bare C… id is "
    "Slack): the channel's audience and source scope."
)


def register(app: typer.Typer) -> None:
    app.command()(ask)


@dataclass(frozen=True)
class View:
    """How to answer for someone somewhere: the engine's `audience`, `wider` and `sources`."""

    principal: str
    where: str  # "dm" or "channel:<platform>:<id>"
    audience: Audience
    wider: Audience
    sources: list[str] | None  # the channel's scope; None = every source

    def as_dict(self) -> dict[str, Any]:
        return {
            "principal": self.principal,
            "where": self.where,
            "audience": self.audience.as_dict(),
            "compared_with": self.wider.as_dict(),
            "sources": self.sources,
        }


_grant = TypeAdapter(Grant)
_SLACK_USER = re.compile(r"^slack:[UW][A-Z0-9]+$")


def parse_where(where: str) -> tuple[str, str] | None:
    """`dm` -> None; `channel:slack:C1`, `channel:discord:123`, `channel:C1` -> (platform, id)."""
    text = where.strip()
    if text == "dm":
        return None
    if not text.startswith("channel:"):
        raise ValueError(f"--where {where!r}: use dm or channel:ID (channel:slack:C…, channel:discord:<id>)")
    rest = text.removeprefix("channel:")
    bare = not rest.startswith(("slack:", "discord:"))  # a bare id is Slack's
    platform, _, channel = ("slack", "", rest) if bare else rest.partition(":")
    try:
        _grant.validate_python(f"channel:{platform}:{channel}")
    except ValidationError:
        raise ValueError(
            f"--where {where!r}: a Slack channel id looks like C0123ABC (or G… for an old private "
            "channel), a Discord one is a number"
        ) from None
    return platform, channel


def asked_for(policy: AccessPolicy, principals: Sequence[str]) -> tuple[str, Audience]:
    """One `--as` is any principal (`AccessPolicy.principal`); several are one person's (their
    user id, user groups, email: what Lore's directory would find for them)."""
    texts = [p.strip() for p in principals]
    try:
        audiences = [policy.principal(t) for t in texts]  # each checked: a clear error if malformed
    except ValueError as exc:
        raise ValueError(f"--as {exc}") from None
    if len(texts) == 1:
        return texts[0], audiences[0]
    odd = [t for t in texts if t == PUBLIC or t.startswith(("group:", "channel:"))]
    if odd:
        raise ValueError(f"--as {odd[0]} is not a person's principal: repeat --as only for one person's")
    label = " ".join(texts)
    return label, policy.person(texts, label)


def view_for(
    settings: Settings, principal: str | Sequence[str], where: str = "dm", *, lookup: bool = False
) -> View:
    """The audience, wider audience and sources Lore uses for `principal` at `where`; with
    `lookup` (and Slack configured), what Slack's directory adds, as the adapter would.
    Raises ValueError with a message for the operator."""
    policy = AccessPolicy(settings)
    texts = [principal] if isinstance(principal, str) else list(principal)
    label, person = asked_for(policy, texts)
    place = parse_where(where)
    directory = _slack_directory(settings) if lookup else None
    if directory is not None and len(texts) == 1 and _SLACK_USER.match(texts[0]):
        found = _looked_up(directory.principals(texts[0].removeprefix("slack:")), texts[0])
        person = policy.person([*texts, *found], label)
    if place is None:
        return View(label, "dm", person, policy.everything(), None)
    platform, channel = place
    adapter = settings.slack if platform == "slack" else settings.discord
    allowed = [str(c) for c in adapter.channels]
    if allowed and channel not in allowed:
        raise ValueError(
            f"Lore does not answer in {platform} channel {channel}: {platform}.channels lists the "
            f"channels it answers in ({', '.join(allowed)})"
        )
    scope = next((list(c.sources) for c in adapter.channel_sources if c.channel == channel), None)
    audience = policy.channel(platform, channel)
    shared = (
        platform == "slack"
        and directory is not None
        and _looked_up(directory.is_external(channel), f"channel {channel}", default=True)
    )
    if shared:  # with another organisation: public only, or no answer
        if settings.slack.external_channels == "refuse":
            raise ValueError(
                f"Slack channel {channel} is shared with another organisation and "
                "slack.external_channels = 'refuse': Lore does not answer there"
            )
        audience = PUBLIC_AUDIENCE
    return View(label, f"channel:{platform}:{channel}", audience, person, scope)


def _slack_directory(settings: Settings) -> SlackDirectory | None:
    if settings.slack.bot_token is None:
        return None
    # Imported here: every `lore` command imports this module, and the Slack side brings
    # prometheus_client in before `lore worker` can set up its multiprocess metrics.
    from bot.slack.directory import SlackDirectory, configured_user_groups, names_emails
    from bot.slack.outbox import make_web_client

    groups = settings.groups
    client = make_web_client(settings.slack)
    return SlackDirectory(client, configured_user_groups(groups), emails=names_emails(groups))


def _looked_up(call: Any, what: str, default: Any = frozenset()) -> Any:
    """Run one directory call; when Slack can't answer, say so and use `default` (as the chat
    core does: fewer rights for a person, public only for a channel)."""
    try:
        return asyncio.run(call)
    except Exception as exc:
        err.print(f"[yellow]note:[/yellow] could not look up {escape(what)} in Slack ({escape(str(exc))})")
        return default


def ask(
    ctx: typer.Context,
    question: Annotated[str, typer.Argument(help="What you want to know.")],
    source: Annotated[str | None, typer.Option(help="Search only this source.")] = None,
    as_: Annotated[
        list[str] | None,
        typer.Option(
            "--as",
            metavar="PRINCIPAL",
            help="Answer exactly as Lore would answer this principal: slack:U…, discord:<id>, "
            "email:…, web:<user>, group:<name> (what membership of that group alone shows), "
            "channel:slack:C… or public. Repeat it for one person's several principals "
            "(--as slack:U… --as slack:group:S… --as email:…). Without it the answer is unfiltered.",
        ),
    ] = None,
    where: Annotated[str | None, typer.Option("--where", metavar="dm|channel:ID", help=WHERE_HELP)] = None,
    as_json: Annotated[
        bool,
        typer.Option(
            "--json",
            help="Print the Answer as JSON (with --as: also `asked_as`; the Answer's `audience` "
            "is the access set used and `withheld` how many matches were left out).",
        ),
    ] = False,
) -> None:
    """Answer a question from the indexed documents, with numbered sources.

    Without --as the answer is unfiltered: it may quote every indexed document, whoever may read
    it (this command is for admins on the machine). With --as it is filtered exactly as Lore
    filters for that principal in that place, and says how many matches were left out.
    """
    settings = settings_of(ctx)
    view: View | None = None
    options: dict[str, Any] = {"source": source} if source else {}
    if where is not None and not as_:
        error("--where needs --as PRINCIPAL (without --as the answer is unfiltered, for no place)")
        raise typer.Exit(2)
    if as_:
        try:
            view = view_for(settings, as_, where or "dm", lookup=True)
        except ValueError as exc:
            error(exc)
            raise typer.Exit(2) from None
        options = {"audience": view.audience, "wider": view.wider, "sources": view.sources}
        if source and view.sources is not None:  # the channel's scope, narrowed to --source
            if source not in view.sources:
                error(f"{view.where} answers only from {', '.join(view.sources)}, not {source!r}")
                raise typer.Exit(2)
            options["sources"] = [source]
        elif source:
            options["sources"] = [source]
    with knowledge_for(settings) as kn:
        if kn.is_empty():
            err.print(_nothing_indexed(settings))
            raise typer.Exit(1)
        answer = kn.answer(question, **options)
    if as_json:
        data = answer.model_dump(mode="json")
        if view is not None:
            data["asked_as"] = view.as_dict()
        out.print_json(json.dumps(data))
        return
    if view is not None:
        err.print(_view_line(view, answer.audience, answer.withheld), highlight=False)
    out.print(answer.text, highlight=False, markup=False)
    if answer.notice:
        err.print(f"[yellow]note:[/yellow] {escape(answer.notice)}", highlight=False)
    if answer.citations:
        out.print("\nSources:", style="bold")
        for c in answer.citations:
            updated = f" (updated {c.updated_at[:10]})" if c.updated_at else ""
            out.print(f"  [{c.n}] {c.title}{updated}\n      {c.url}", highlight=False, markup=False)
    t = answer.timings
    err.print(
        f"[dim]{answer.model} · retrieve {t.retrieve_ms:.0f} ms · generate {t.generate_ms:.0f} ms[/dim]"
    )


def _view_line(view: View, used: list[str], withheld: int) -> str:
    where = "in a DM" if view.where == "dm" else f"in {view.where.removeprefix('channel:')}"
    grants = ", ".join(used or sorted(view.audience.grants))
    left = (
        f"{withheld} match{'es' if withheld != 1 else ''} left out"
        if view.where == "dm"
        else f"{withheld} match{'es' if withheld != 1 else ''} {view.principal} could read left out "
        "(Answer privately)"
    )
    scope = f" · sources: {', '.join(view.sources)}" if view.sources is not None else ""
    return f"[bold]as {escape(view.principal)} {escape(where)}[/bold]: reads {escape(grants)}{scope} · {left}"
