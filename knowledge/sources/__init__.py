"""Sources turn configuration into documents: `make_loader(source, ...)` picks the loader."""

from __future__ import annotations

from pathlib import Path

from config.settings import DirectorySource, GitSource, WebsiteSource
from knowledge.sources.base import Loader, Skipped, SourceUnavailable, make_document
from knowledge.sources.directory import DirectoryLoader, UrlFor
from knowledge.sources.git import GitLoader
from knowledge.sources.website import WebsiteLoader

__all__ = ["Loader", "Skipped", "SourceUnavailable", "make_document", "make_loader"]


def make_loader(
    source: DirectorySource | GitSource | WebsiteSource, *, data_dir: Path, max_bytes: int
) -> Loader:
    if isinstance(source, DirectorySource):
        return DirectoryLoader(
            name=source.name,
            root=source.path,
            include=source.include,
            exclude=source.exclude,
            url_for=UrlFor(source.url_prefix, source.path),
            max_bytes=max_bytes,
        )
    if isinstance(source, GitSource):
        return GitLoader(source, checkout_dir=data_dir / "git" / source.name, max_bytes=max_bytes)
    return WebsiteLoader(source, max_bytes=max_bytes)
