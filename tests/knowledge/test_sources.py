"""Directory, Git and website sources, each against the real thing (a real repo, a real HTTP server)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import git
import pytest

from tests.conftest import write


def doc_ids(kn, source: str) -> set[str]:
    return {d for _c, d in kn.store.chunk_ids(source)}


def test_directory_globs_and_links(make_knowledge, tmp_path):
    root = tmp_path / "d"
    write(root, "guide/a.md", "# A\n\nAlpha guide text about printers.\n")
    write(root, "guide/drafts/b.md", "# B\n\nDraft about printers.\n")
    write(root, "notes.txt", "Plain text about printers and toner.")
    write(root, ".hidden/c.md", "# C\n\nHidden.\n")
    kn = make_knowledge(
        [
            {
                "name": "d",
                "type": "directory",
                "path": str(root),
                "include": ["**/*.md", "*.txt"],
                "exclude": ["**/drafts/**"],
                "url_prefix": "https://git.example/docs/blob/main",
            }
        ]
    )
    kn.sync("d")
    assert doc_ids(kn, "d") == {"d:guide/a.md", "d:notes.txt"}
    answer = kn.answer("where is the alpha guide about printers?")
    assert answer.citations[0].url == "https://git.example/docs/blob/main/guide/a.md"
    assert answer.citations[0].updated_at  # a last-updated date for the citation


@pytest.fixture
def repo(tmp_path: Path) -> git.Repo:
    path = tmp_path / "origin"
    repo = git.Repo.init(path, initial_branch="main")
    with repo.config_writer() as cw:
        cw.set_value("user", "name", "Test").set_value("user", "email", "t@example.com")
    write(
        path,
        "docs/laptops.md",
        "# Laptops\n\nEngineers get a 16-inch MacBook Pro, refreshed every 3 years.\n",
    )
    write(path, "docs/printers.md", "# Printers\n\nThe 3rd floor printer is called Gutenberg.\n")
    write(path, "src/main.py", "print('not docs')\n")
    repo.index.add(["docs/laptops.md", "docs/printers.md", "src/main.py"])
    repo.index.commit("handbook")
    return repo


def test_git_source_clones_pulls_and_links_to_the_web(make_knowledge, repo):
    src = {
        "name": "g",
        "type": "git",
        "repo": repo.working_tree_dir,
        "branch": "main",
        "subfolder": "docs",
        "web_url": "https://github.com/acme/handbook",
    }
    kn = make_knowledge([src])
    first = kn.sync("g")
    assert first.added == 2 and doc_ids(kn, "g") == {"g:laptops.md", "g:printers.md"}
    answer = kn.answer("what laptop do engineers get")
    assert answer.citations[0].url == "https://github.com/acme/handbook/blob/main/docs/laptops.md"
    assert answer.citations[0].updated_at[:4].isdigit()

    root = Path(repo.working_tree_dir)
    write(
        root,
        "docs/laptops.md",
        "# Laptops\n\nEngineers get a 14-inch MacBook Pro, refreshed every 4 years.\n",
    )
    write(root, "docs/monitors.md", "# Monitors\n\nEveryone may order two 27-inch monitors.\n")
    (root / "docs/printers.md").unlink()
    repo.index.add(["docs/laptops.md", "docs/monitors.md"])
    repo.index.remove(["docs/printers.md"])
    repo.index.commit("update")
    second = kn.sync("g")
    assert (second.added, second.changed, second.deleted) == (1, 1, 1)
    assert "14-inch" in kn.engine.search("laptop size", top_k=1)[0].text


def test_unreachable_git_remote_is_skipped_and_other_sources_still_index(make_knowledge, tmp_path):
    good = tmp_path / "good"
    write(good, "faq.md", "# FAQ\n\nLunch is served at noon.\n")
    kn = make_knowledge(
        [
            {"name": "remote", "type": "git", "repo": "http://127.0.0.1:9/nowhere.git"},
            {"name": "good", "type": "directory", "path": str(good)},
        ]
    )
    bad = kn.sync("remote")
    assert bad.error and "unreachable" in bad.error and bad.transient
    assert bad.summary()["skipped"][0]["reason"] == bad.error
    assert kn.sync("good").added == 1


# -- websites --------------------------------------------------------------------


def page(title: str, body: str, links: list[str] = ()) -> str:
    anchors = "".join(f'<a href="{href}">{href}</a> ' for href in links)
    return (
        f"<html><head><title>{title}</title><script>track()</script></head><body>"
        f"<nav>{anchors}</nav><main><h1>{title}</h1><p>{body}</p></main></body></html>"
    )


SITE = {
    "/robots.txt": ("text/plain", "User-agent: *\nDisallow: /private/\n"),
    "/": (
        "text/html",
        page(
            "Home",
            "Welcome to the Northwind wiki, the home of our internal documentation.",
            ["/wifi", "/private/salaries", "/gone", "https://elsewhere.example/x", "#top"],
        ),
    ),
    "/wifi": (
        "text/html",
        page(
            "Wi-Fi", "The office Wi-Fi network is called NW-Staff; guests use NW-Guest.", ["/wifi/printing"]
        ),
    ),
    "/wifi/printing": (
        "text/html",
        page("Printing", "Print from Wi-Fi by adding the printer named Gutenberg.", ["/deep"]),
    ),
    "/deep": (
        "text/html",
        page("Deep", "This page is three links away from the start page and is never crawled."),
    ),
    "/private/salaries": ("text/html", page("Salaries", "Robots.txt says nobody should crawl this page.")),
    "/sitemap.xml": (
        "application/xml",
        '<?xml version="1.0"?><urlset xmlns="http://www.sitemaps.org/schemas/'
        'sitemap/0.9"><url><loc>{base}/deep</loc></url><url><loc>{base}/wifi</loc></url></urlset>',
    ),
}


@pytest.fixture
def site() -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path not in SITE:
                self.send_error(404)
                return
            ctype, body = SITE[self.path]
            data = body.replace("{base}", base).encode()
            self.send_response(200)
            self.send_header("Content-Type", f"{ctype}; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    base = f"http://127.0.0.1:{server.server_port}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield base
    server.shutdown()


def test_website_crawl_stays_on_site_respects_robots_depth_and_dead_links(make_knowledge, site):
    kn = make_knowledge([{"name": "w", "type": "website", "url": site + "/", "max_depth": 2}])
    result = kn.sync("w")
    assert doc_ids(kn, "w") == {site + "/", site + "/wifi", site + "/wifi/printing"}
    reasons = {s["path"]: s["reason"] for s in result.skipped}
    assert reasons[site + "/private/salaries"] == "disallowed by robots.txt"
    assert "dead link" in reasons[site + "/gone"]
    hit = kn.engine.search("what is the guest wifi called", top_k=1)[0]
    assert hit.url == site + "/wifi" and "track()" not in hit.text


def test_website_page_limit_and_sitemap(make_knowledge, site):
    kn = make_knowledge([{"name": "w", "type": "website", "url": site + "/", "max_pages": 2}])
    kn.sync("w")
    assert len(doc_ids(kn, "w")) == 2
    kn2 = make_knowledge(
        [{"name": "s", "type": "website", "sitemap": site + "/sitemap.xml", "max_depth": 0}],
        data_dir=kn.settings.data_dir.parent / "s",
    )
    kn2.sync("s")
    assert doc_ids(kn2, "s") == {site + "/deep", site + "/wifi"}


def test_unreachable_website_is_a_transient_source_failure(make_knowledge):
    kn = make_knowledge([{"name": "w", "type": "website", "url": "http://127.0.0.1:9/"}])
    result = kn.sync("w")
    assert result.error and result.transient
