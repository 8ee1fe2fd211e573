"""A local folder: recursive, filtered by include/exclude globs (gitignore-style)."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from urllib.parse import quote

import pathspec
from llama_index.core import Document

from knowledge.readers import SUPPORTED_SUFFIXES, Unreadable, read_bytes
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
        self._files: list[Path] | None = None

    def _list(self) -> list[Path]:
        if self._files is None:
            if not self.root.is_dir():
                raise SourceUnavailable(f"folder {self.root} does not exist", transient=False)
            files = []
            for dirpath, dirnames, filenames in os.walk(self.root):
                # Hidden folders (.git, .venv, …) are never documents.
                dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
                for fname in sorted(filenames):
                    if fname.startswith("."):
                        continue
                    path = Path(dirpath) / fname
                    rel = path.relative_to(self.root).as_posix()
                    if self._include.match_file(rel) and not self._exclude.match_file(rel):
                        files.append(path)
            self._files = files
        return self._files

    def estimate(self) -> int | None:
        return len(self._list())

    def load(self) -> Iterator[Document | Skipped]:
        for path in self._list():
            rel = path.relative_to(self.root).as_posix()
            item = self._read_one(path, rel)
            if isinstance(item, Skipped):
                log.warning("skipped %s:%s: %s", self.name, rel, item.reason)
            yield item

    def _read_one(self, path: Path, rel: str) -> Document | Skipped:
        if path.suffix.lower() not in SUPPORTED_SUFFIXES:
            return Skipped(rel, f"unsupported file type {path.suffix or '(none)'}")
        try:
            if path.is_symlink() and not path.resolve().is_relative_to(self.root.resolve()):
                return Skipped(rel, "symlink points outside the source folder")
            size = path.stat().st_size
            if size > self._max_bytes:
                return Skipped(
                    rel, f"larger than the size limit ({size / 1e6:.1f} MB > {self._max_bytes / 1e6:.1f} MB)"
                )
            data = path.read_bytes()
            text = read_bytes(data, PurePosixPath(rel), max_bytes=self._max_bytes)
        except Unreadable as exc:
            return Skipped(rel, str(exc))
        except OSError as exc:
            return Skipped(rel, f"cannot read: {exc.strerror or exc}")
        updated = self._updated_at_for(rel) if self._updated_at_for else None
        if updated is None:
            updated = datetime.fromtimestamp(path.stat().st_mtime, tz=UTC)
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
