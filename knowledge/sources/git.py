"""A Git repository (URL or local path): cloned or pulled into the data dir, then read as a folder."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

import git
from llama_index.core import Document

from config.settings import GitSource
from knowledge.sources.base import Skipped, SourceUnavailable
from knowledge.sources.directory import DirectoryLoader, UpdatedAtFor

log = logging.getLogger(__name__)

# Messages from git that mean "try again later" rather than "this config is wrong".
_TRANSIENT = (
    "could not resolve host",
    "failed to connect",
    "connection",
    "timed out",
    "temporarily",
    "early eof",
    "503",
    "502",
    "500",
)


class GitLoader:
    def __init__(self, source: GitSource, *, checkout_dir: Path, max_bytes: int) -> None:
        self.source = source
        self.checkout_dir = checkout_dir
        self.max_bytes = max_bytes
        self._inner: DirectoryLoader | None = None

    def _prepare(self) -> DirectoryLoader:
        if self._inner is None:
            repo = self._clone_or_pull()
            root = Path(repo.working_tree_dir or self.checkout_dir) / self.source.subfolder
            if not root.is_dir():
                raise SourceUnavailable(
                    f"subfolder {self.source.subfolder!r} not found on branch {self.source.branch}",
                    transient=False,
                )
            self._inner = DirectoryLoader(
                name=self.source.name,
                root=root,
                include=self.source.include,
                exclude=self.source.exclude,
                url_for=self._url_for,
                max_bytes=self.max_bytes,
                source_type="git",
                updated_at_for=UpdatedAtFor(_last_commit_times(repo, self.source.subfolder)),
            )
        return self._inner

    def estimate(self) -> int | None:
        return self._prepare().estimate()

    def load(self) -> Iterator[Document | Skipped]:
        return self._prepare().load()

    def _url_for(self, rel: str) -> str:
        path = "/".join(p for p in (self.source.subfolder.strip("/"), rel) if p)
        if self.source.web_url:
            return f"{self.source.web_url.rstrip('/')}/blob/{quote(self.source.branch)}/{quote(path)}"
        return (self.checkout_dir / path).resolve().as_uri()

    def _clone_or_pull(self) -> git.Repo:
        src, branch = self.source, self.source.branch
        try:
            if (self.checkout_dir / ".git").is_dir():
                repo = git.Repo(self.checkout_dir)
                if repo.remotes.origin.url != src.repo:  # the config now points elsewhere
                    shutil.rmtree(self.checkout_dir)
                    return self._clone_or_pull()
                repo.remotes.origin.fetch(f"+refs/heads/{branch}:refs/remotes/origin/{branch}", prune=True)
                repo.git.checkout("-B", branch, f"origin/{branch}")
                repo.git.reset("--hard", f"origin/{branch}")
                repo.git.clean("-fdx")
                return repo
            self.checkout_dir.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.checkout_dir.with_name(self.checkout_dir.name + ".partial")
            shutil.rmtree(tmp, ignore_errors=True)
            repo = git.Repo.clone_from(src.repo, tmp, branch=branch, single_branch=True)
            tmp.rename(self.checkout_dir)  # a crash mid-clone leaves no half checkout behind
            return git.Repo(self.checkout_dir)
        except git.GitCommandError as exc:
            detail = (exc.stderr or str(exc)).strip().replace("\n", " ")
            transient = any(t in detail.lower() for t in _TRANSIENT)
            if "not found in upstream" in detail.lower() or "couldn't find remote ref" in detail.lower():
                transient = False
            raise SourceUnavailable(
                f"git remote {src.repo} unreachable or branch missing: {detail}", transient=transient
            ) from exc


def _last_commit_times(repo: git.Repo, subfolder: str) -> dict[str, datetime]:
    """Path (relative to subfolder) -> time of the last commit that touched it, in one git call."""
    prefix = subfolder.strip("/")
    times: dict[str, datetime] = {}
    out = repo.git.log("--format=@%ct", "--name-only", "--no-renames", "--", prefix or ".")
    current: datetime | None = None
    for line in out.splitlines():
        if line.startswith("@"):
            current = datetime.fromtimestamp(int(line[1:]), tz=UTC)
        elif line and current is not None:
            rel = line[len(prefix) + 1 :] if prefix and line.startswith(prefix + "/") else line
            times.setdefault(rel, current)  # log is newest first
    return times
