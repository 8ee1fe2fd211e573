"""A local folder: recursive, filtered by include/exclude globs (gitignore-style)."""

from __future__ import annotations

import errno
import logging
import os
import stat
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from urllib.parse import quote

import pathspec
from llama_index.core import Document

from knowledge.readers import SUPPORTED_SUFFIXES, Unreadable, read_bytes, too_large
from knowledge.sources.base import Skipped, SourceUnavailable, make_document

log = logging.getLogger(__name__)


class DirectoryLoader:
    def __init__(
        self,
        *,
        name: str,
        root: Path,
        include: list[str],
        exclude: list[str],
        url_for: Callable[[str], str],
        max_bytes: int,
        source_type: str = "directory",
        updated_at_for: Callable[[str], datetime | None] | None = None,
    ) -> None:
        self.name = name
        self.root = root
        self._include = pathspec.GitIgnoreSpec.from_lines(include or ["**/*"])
        self._exclude = pathspec.GitIgnoreSpec.from_lines(exclude)
        self._url_for = url_for
        self._max_bytes = max_bytes
        self._source_type = source_type
        self._updated_at_for = updated_at_for
        self._entries: list[Path | Skipped] | None = None
        self._real_root = root

    def _list(self) -> list[Path | Skipped]:
        """Files to read, and the entries that can't be, each as a skip with its reason.

        Symlinked folders are never walked into: a loop would never end, and a link out of
        the folder would index files nobody put in the source. Each is reported instead."""
        if self._entries is None:
            if not self.root.is_dir():
                raise SourceUnavailable(f"folder {self.root} does not exist", transient=False)
            self._real_root = Path(os.path.realpath(self.root))
            entries: list[Path | Skipped] = []

            def unlistable(exc: OSError) -> None:
                if Path(str(exc.filename)) == self.root:
                    raise SourceUnavailable(
                        f"cannot list folder {self.root}: {exc.strerror or exc}", transient=False
                    )
                rel = Path(str(exc.filename)).relative_to(self.root).as_posix()
                if not self._exclude.match_file(rel + "/"):
                    entries.append(Skipped(rel, f"cannot list folder: {exc.strerror or exc}"))

            for dirpath, dirnames, filenames in os.walk(self.root, onerror=unlistable):
                # Hidden folders (.git, .venv, …) are never documents.
                dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
                for dname in [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
                    dirnames.remove(dname)
                    rel = (Path(dirpath) / dname).relative_to(self.root).as_posix()
                    if not self._exclude.match_file(rel + "/"):
                        entries.append(Skipped(rel, self._folder_link_reason(Path(dirpath), dname)))
                for fname in sorted(filenames):
                    if fname.startswith("."):
                        continue
                    path = Path(dirpath) / fname
                    rel = path.relative_to(self.root).as_posix()
                    if self._include.match_file(rel) and not self._exclude.match_file(rel):
                        entries.append(path)
            self._entries = entries
        return self._entries

    def _folder_link_reason(self, parent: Path, name: str) -> str:
        try:
            target = Path(os.path.realpath(parent / name, strict=True))
        except OSError as exc:
            return _link_problem(exc)
        if not target.is_relative_to(self._real_root):
            return "symlink points outside the source folder (not followed)"
        if Path(os.path.realpath(parent)).is_relative_to(target):
            return "symlink loop: it points to a folder that contains it (not followed)"
        return "symlink to a folder inside the source: not followed, so no file is read twice"

    def estimate(self) -> int | None:
        return len(self._list())

    def load(self) -> Iterator[Document | Skipped]:
        for entry in self._list():
            item = entry if isinstance(entry, Skipped) else self._read_one(entry)
            if isinstance(item, Skipped):
                log.warning("skipped %s:%s: %s", self.name, item.path, item.reason)
            yield item

    def _read_one(self, path: Path) -> Document | Skipped:
        rel = path.relative_to(self.root).as_posix()
        try:
            # os.path.realpath, not Path.resolve: on Python 3.11 a loop there is a RuntimeError.
            real = Path(os.path.realpath(path, strict=True))
        except OSError as exc:
            return Skipped(rel, _link_problem(exc) if path.is_symlink() else _cannot_read(exc))
        if not real.is_relative_to(self._real_root):
            return Skipped(rel, "symlink points outside the source folder (not followed)")
        if path.suffix.lower() not in SUPPORTED_SUFFIXES:
            return Skipped(rel, f"unsupported file type {path.suffix or '(none)'}")
        try:
            info = real.stat()
            if not stat.S_ISREG(info.st_mode):  # a FIFO would block the sync forever
                return Skipped(rel, "not a regular file (a pipe, socket or device)")
            if info.st_size > self._max_bytes:
                return Skipped(rel, too_large(info.st_size, self._max_bytes))
            data = real.read_bytes()  # the checked target, not the link, which may have changed since
            text = read_bytes(data, PurePosixPath(rel), max_bytes=self._max_bytes)
        except Unreadable as exc:
            return Skipped(rel, str(exc))
        except OSError as exc:
            return Skipped(rel, _cannot_read(exc))
        updated = self._updated_at_for(rel) if self._updated_at_for else None
        if updated is None:
            updated = datetime.fromtimestamp(info.st_mtime, tz=UTC)
        return make_document(
            source=self.name,
            source_type=self._source_type,
            doc_id=f"{self.name}:{rel}",
            path=rel,
            text=text.text,
            title=text.title,
            url=self._url_for(rel),
            updated_at=updated,
            is_markdown=text.is_markdown,
        )


def _link_problem(exc: OSError) -> str:
    if exc.errno == errno.ELOOP:
        return "symlink loop"
    if exc.errno == errno.ENOENT:
        return "broken symlink: its target does not exist"
    return _cannot_read(exc)


def _cannot_read(exc: OSError) -> str:
    return f"cannot read: {exc.strerror or exc}"


class UrlFor:
    """Relative path -> citation link: a URL prefix, or a file:// URL when there is none."""

    def __init__(self, prefix: str | None, root: Path) -> None:
        self.prefix = prefix
        self.root = root

    def __call__(self, rel: str) -> str:
        if self.prefix:
            return self.prefix.rstrip("/") + "/" + quote(rel)
        return (self.root / rel).resolve().as_uri()


class UpdatedAtFor:
    """Relative path -> last-updated time, e.g. from Git history. None falls back to mtime."""

    def __init__(self, times: dict[str, datetime]) -> None:
        self.times = times

    def __call__(self, rel: str) -> datetime | None:
        return self.times.get(rel)
