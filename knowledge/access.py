"""Who may read which document, and whose rights an answer is given with.

The model is Onyx's and Glean's. Every chunk's payload carries an access list of grants:
`public`, `group:NAME` (a `[groups]` entry), a person (`slack:U…`, `discord:…`, `email:…`,
`web:alice`) or a channel (`channel:slack:C…`). A question is asked for an `Audience`, the set
of grants its readers hold, and the engine keeps a chunk only when its list shares a grant with
the audience. The filter runs inside both searches (a keyword index on `access`), never after
them, so top-k is filled from what the audience may read.

Audiences:
- **a person** (a DM, a private `/ask`, the web console): `public`, their own principals, and
  every group with a member that matches one of them;
- **a channel**: `public` plus grants naming that channel. Everyone who reads the channel sees
  the answer, so the asker's own rights don't count there.

Access lists come from `lore.toml`: a source's `access`, overridden by the first of its
`access_rules` whose gitignore-style glob matches the document's path. They are not part of a
document's hash, so a changed rule re-labels chunks at the next sync without re-embedding.
"""

from __future__ import annotations

import fnmatch
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field

import pathspec
from pydantic import TypeAdapter, ValidationError

from config.settings import Grant, Member, Settings

PUBLIC = "public"
ACCESS_KEY = "access"  # the payload field holding a chunk's access list

__all__ = ["ACCESS_KEY", "PUBLIC", "PUBLIC_AUDIENCE", "AccessPolicy", "Audience"]


@dataclass(frozen=True)
class Audience:
    """Who will read an answer: the grants any of its readers' chunks must share."""

    grants: frozenset[str]
    label: str = field(default="", compare=False)  # for logs and `--json`: "dm slack:U1", "channel slack:C1"

    @property
    def key(self) -> str:
        """Stable and short, for keys of caches and threads: equal grants, equal key."""
        return hashlib.sha256("\n".join(sorted(self.grants)).encode()).hexdigest()[:16]

    def can_read(self, access: Iterable[str]) -> bool:
        return not self.grants.isdisjoint(access)

    @property
    def public_only(self) -> bool:
        return self.grants == {PUBLIC}

    def as_dict(self) -> dict[str, object]:
        return {"label": self.label, "grants": sorted(self.grants)}


PUBLIC_AUDIENCE = Audience(frozenset({PUBLIC}), "public")


class AccessPolicy:
    """The access settings, compiled: document labels and audiences."""

    def __init__(self, settings: Settings) -> None:
        self._groups = {name: tuple(m.lower() for m in members) for name, members in settings.groups.items()}
        self._defaults = {src.name: tuple(src.access) for src in settings.sources}
        self._rules = {
            src.name: [
                (rule.glob, pathspec.GitIgnoreSpec.from_lines([rule.glob]), tuple(rule.access))
                for rule in src.access_rules
            ]
            for src in settings.sources
        }

    # -- documents ----------------------------------------------------------------------

    def document_access(self, source: str, path: str) -> list[str]:
        """The access list of the document at `path` (relative to its source, or a URL path)."""
        for _glob, spec, access in self._rules.get(source, ()):
            if spec.match_file(path.lstrip("/")):
                return sorted(access)
        return sorted(self._defaults.get(source, (PUBLIC,)))

    def unmatched_rules(self, source: str, paths: Iterable[str]) -> list[str]:
        """The globs of `source`'s rules that match none of `paths` (worth a warning: a typo)."""
        rules = self._rules.get(source, [])
        left = {glob for glob, _spec, _access in rules}
        for path in paths:
            if not left:
                break
            for glob, spec, _access in rules:
                if glob in left and spec.match_file(path.lstrip("/")):
                    left.discard(glob)
        return [glob for glob, _spec, _access in rules if glob in left]

    def summary(self, source: str) -> str:
        """One line for `lore sources`: "public", or "group:hr; 2 rules"."""
        text = ", ".join(self._defaults.get(source, (PUBLIC,)))
        rules = len(self._rules.get(source, []))
        return f"{text}; {rules} rule{'s' if rules != 1 else ''}" if rules else text

    @property
    def restricted(self) -> bool:
        """Whether anything indexed may be other than public."""
        return any(d != (PUBLIC,) for d in self._defaults.values()) or any(self._rules.values())

    # -- audiences ----------------------------------------------------------------------

    def groups_of(self, principals: Iterable[str]) -> list[str]:
        """The groups with a member matching one of `principals` (emails match `*@domain`)."""
        mine = {p.lower() for p in principals}
        return sorted(
            name for name, members in self._groups.items() if any(_matches(m, mine) for m in members)
        )

    def person(self, principals: Iterable[str], label: str = "") -> Audience:
        """A reader with these principals (their user id, user groups or roles, email)."""
        mine = sorted({p for p in principals if p})
        grants = {PUBLIC, *mine, *(f"group:{g}" for g in self.groups_of(mine))}
        return Audience(frozenset(grants), label or " ".join(mine) or "anonymous")

    def channel(self, platform: str, channel: str, label: str = "") -> Audience:
        """Whoever reads a channel: public content and what a rule grants that channel."""
        grant = f"channel:{platform}:{channel}"
        return Audience(frozenset({PUBLIC, grant}), label or f"channel {platform}:{channel}")

    def principal(self, text: str) -> Audience:
        """`--as` for admins: a person (`slack:U1`, `web:alice`), a group (`group:hr`, what any
        member sees through the group alone) or a channel (`channel:slack:C1`)."""
        if text == PUBLIC:
            return PUBLIC_AUDIENCE
        if text.startswith("group:"):
            name = text[6:]
            if name not in self._groups:
                known = ", ".join(sorted(self._groups)) or "none defined"
                raise ValueError(f"unknown group {name!r} (groups: {known})")
            return Audience(frozenset({PUBLIC, text}), text)
        if text.startswith("channel:"):
            _, platform, channel = [*text.split(":", 2), "", ""][:3]
            if platform not in ("slack", "discord") or not _valid(_GRANT, text):
                raise ValueError(f"{text!r}: use channel:slack:C… or channel:discord:<id>")
            return self.channel(platform, channel)
        if ":" not in text:
            raise ValueError(
                f"{text!r}: use slack:U…, discord:<id>, email:…, web:<user>, group:<name> or channel:…"
            )
        if not _valid(_MEMBER, text):
            raise ValueError(
                f"{text!r} is not a principal: use slack:U…, slack:group:S…, discord:<id>, "
                "discord:role:<id>, email:name@domain, web:<user>, group:<name> or channel:…"
            )
        return self.person([text], text)

    def everything(self) -> Audience:
        """Every grant `lore.toml` hands out: reads whatever the index holds (labelled by these
        settings). For counting what someone else's view leaves out (`wider`), never for answering
        (unfiltered is `audience=None`)."""
        grants = {PUBLIC}
        for access in self._defaults.values():
            grants.update(access)
        for rules in self._rules.values():
            for _glob, _spec, access in rules:
                grants.update(access)
        return Audience(frozenset(grants), "everything")


_MEMBER: TypeAdapter[str] = TypeAdapter(Member)
_GRANT: TypeAdapter[str] = TypeAdapter(Grant)


def _valid(grammar: TypeAdapter[str], text: str) -> bool:
    try:
        grammar.validate_python(text)
    except ValidationError:
        return False
    return True


def _matches(member: str, principals: set[str]) -> bool:
    if member.startswith("email:") and "*" in member:
        return any(p.startswith("email:") and fnmatch.fnmatchcase(p, member) for p in principals)
    return member in principals
