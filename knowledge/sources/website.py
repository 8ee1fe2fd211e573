"""A website: crawled from a start URL or a sitemap, on one host, politely (robots.txt)."""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterator
from datetime import datetime
from email.utils import parsedate_to_datetime
from urllib.parse import urldefrag, urljoin, urlsplit
from urllib.robotparser import RobotFileParser

import defusedxml.ElementTree as ET
import httpx
import pathspec
from bs4 import BeautifulSoup
from defusedxml import DefusedXmlException
from llama_index.core import Document

from config.settings import WebsiteSource
from knowledge.readers import Unreadable, read_html
from knowledge.sources.base import Skipped, SourceUnavailable, make_document

log = logging.getLogger(__name__)

_SKIP_EXTENSIONS = (
    ".png",
    ".jpg",
    ".jpeg",
    ".gif",
    ".svg",
    ".css",
    ".js",
    ".zip",
    ".gz",
    ".mp4",
    ".ico",
    ".woff",
)


class WebsiteLoader:
    def __init__(self, source: WebsiteSource, *, max_bytes: int, timeout: float = 15.0) -> None:
        self.source = source
        self.max_bytes = max_bytes
        self.timeout = timeout
        start = source.url or source.sitemap or ""
        self.host = urlsplit(start).netloc
        self._paths = pathspec.GitIgnoreSpec.from_lines(source.include) if source.include else None
        self._exclude = pathspec.GitIgnoreSpec.from_lines(source.exclude)

    def estimate(self) -> int | None:
        return self.source.max_pages  # an upper bound: the crawl discovers pages as it goes

    def load(self) -> Iterator[Document | Skipped]:
        with httpx.Client(
            timeout=self.timeout, follow_redirects=True, headers={"User-Agent": self.source.user_agent}
        ) as client:
            robots = self._robots(client)
            seeds = self._sitemap_urls(client) if self.source.sitemap else []
            if self.source.url:
                seeds.insert(0, self.source.url)
            yield from self._crawl(client, robots, seeds)

    def _crawl(
        self, client: httpx.Client, robots: RobotFileParser, seeds: list[str]
    ) -> Iterator[Document | Skipped]:
        queue: deque[tuple[str, int]] = deque((self._canonical(u), 0) for u in seeds)
        seen: set[str] = {u for u, _ in queue}
        fetched = 0
        first = True
        while queue and fetched < self.source.max_pages:
            url, depth = queue.popleft()
            if not robots.can_fetch(self.source.user_agent, url):
                yield Skipped(url, "disallowed by robots.txt")
                first = False
                continue
            fetched += 1
            page = self._fetch(client, url, must_work=first)
            first = False
            if isinstance(page, Skipped):
                log.warning("skipped %s: %s", url, page.reason)
                yield page
                continue
            html, final_url, updated = page
            if depth < self.source.max_depth:
                for link in self._links(html, final_url):
                    if link not in seen:
                        seen.add(link)
                        queue.append((link, depth + 1))
            if not self._wanted(url):
                continue  # followed for its links only
            try:
                text = read_html(html, fallback_title=urlsplit(url).path or url, url=url)
            except Unreadable as exc:
                yield Skipped(url, str(exc))
                continue
            yield make_document(
                source=self.source.name,
                source_type="website",
                doc_id=url,
                path=urlsplit(url).path or "/",
                text=text.text,
                title=text.title,
                url=url,
                updated_at=updated,
                is_markdown=True,
            )

    def _fetch(
        self, client: httpx.Client, url: str, *, must_work: bool
    ) -> tuple[str, str, datetime | None] | Skipped:
        try:
            resp = client.get(url)
        except httpx.HTTPError as exc:
            if must_work:
                raise SourceUnavailable(f"start page {url} unreachable: {exc}", transient=True) from exc
            return Skipped(url, f"unreachable: {type(exc).__name__}", doc_id=url)
        if resp.status_code >= 500 or resp.status_code == 429:
            if must_work:
                raise SourceUnavailable(f"start page {url} answered HTTP {resp.status_code}", transient=True)
            return Skipped(url, f"HTTP {resp.status_code} (kept the indexed copy)", doc_id=url)
        if resp.status_code >= 400:
            if must_work:
                raise SourceUnavailable(f"start page {url} answered HTTP {resp.status_code}", transient=False)
            return Skipped(url, f"dead link: HTTP {resp.status_code}")
        ctype = resp.headers.get("content-type", "")
        if "html" not in ctype:
            return Skipped(url, f"not HTML ({ctype or 'no content type'})")
        if len(resp.content) > self.max_bytes:
            return Skipped(url, f"larger than the size limit ({len(resp.content) / 1e6:.1f} MB)")
        updated = None
        if last_modified := resp.headers.get("last-modified"):
            try:
                updated = parsedate_to_datetime(last_modified)
            except (TypeError, ValueError):
                updated = None
        return resp.text, self._canonical(str(resp.url)), updated

    def _links(self, html: str, base: str) -> Iterator[str]:
        soup = BeautifulSoup(html, "html.parser")
        for a in soup.find_all("a", href=True):
            href = str(a["href"])
            if href.startswith(("mailto:", "javascript:", "tel:")):
                continue
            url = self._canonical(urljoin(base, href))
            parts = urlsplit(url)
            if (
                parts.scheme in ("http", "https")
                and parts.netloc == self.host
                and not parts.path.lower().endswith(_SKIP_EXTENSIONS)
            ):
                yield url

    def _wanted(self, url: str) -> bool:
        path = urlsplit(url).path.lstrip("/") or "index"
        if self._exclude.match_file(path):
            return False
        return self._paths is None or self._paths.match_file(path)

    def _robots(self, client: httpx.Client) -> RobotFileParser:
        parts = urlsplit(self.source.url or self.source.sitemap or "")
        robots_url = f"{parts.scheme}://{parts.netloc}/robots.txt"
        robots = RobotFileParser(robots_url)
        try:
            resp = client.get(robots_url)
        except httpx.HTTPError as exc:
            raise SourceUnavailable(f"site {parts.netloc} unreachable: {exc}", transient=True) from exc
        if resp.status_code >= 500:
            raise SourceUnavailable(f"robots.txt answered HTTP {resp.status_code}", transient=True)
        # A missing robots.txt (4xx) allows everything, as crawlers conventionally treat it.
        robots.parse(resp.text.splitlines() if resp.status_code == 200 else [])
        return robots

    def _sitemap_urls(self, client: httpx.Client, url: str | None = None, depth: int = 0) -> list[str]:
        url = url or self.source.sitemap or ""
        try:
            resp = client.get(url)
            resp.raise_for_status()
            root = ET.fromstring(resp.content)
        except (httpx.HTTPError, ET.ParseError, DefusedXmlException) as exc:
            if depth == 0 and not self.source.url:
                raise SourceUnavailable(f"sitemap {url} unreadable: {exc}", transient=True) from exc
            log.warning("sitemap %s unreadable: %s", url, exc)
            return []
        urls: list[str] = []
        for loc in root.iter():
            if loc.tag.endswith("loc") and loc.text:
                found = loc.text.strip()
                if root.tag.endswith("sitemapindex") and depth < 2:
                    urls.extend(self._sitemap_urls(client, found, depth + 1))
                elif urlsplit(found).netloc == self.host:
                    urls.append(found)
        return urls

    @staticmethod
    def _canonical(url: str) -> str:
        return urldefrag(url)[0]
