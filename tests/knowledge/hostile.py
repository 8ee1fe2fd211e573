"""A source folder built to break a sync: symlink loops, dangling and escaping links, a FIFO.

Shared by the `lore index` tests (tests/knowledge) and the Celery worker test (tests/workers).
Every hostile entry must be skipped with a reason; every good page must be indexed.
"""

from __future__ import annotations

import os
from pathlib import Path

from tests.conftest import write

GOOD = {
    "it/vpn.md": "# VPN\n\nWe use WireGuard for remote access. Install it from Self Service.\n",
    "hr/leave.md": "# Leave\n\nEveryone gets 25 days of paid leave a year.\n",
    "expenses/travel.md": "# Travel\n\nThe domestic per diem is 75 dollars a day.\n",
    "it/printers.md": "# Printers\n\nThe third-floor printer is called Heron and prints double-sided.\n",
    "hr/parental.md": "# Parental leave\n\nParents get 20 weeks of fully paid parental leave.\n",
    "facilities/parking.md": "# Parking\n\nStaff parking is on level two of the north garage.\n",
    # A link that stays inside the folder is an ordinary page under its own path.
    "alias.md": "(symlink to it/vpn.md)",
}

OUTSIDE_MARKER = "zebracorn-outside-secret"

# path -> words its skip reason must contain
HOSTILE = {
    "loop.md": "symlink loop",
    "ping.md": "symlink loop",
    "pong.md": "symlink loop",
    "dangling.md": "broken symlink",
    "escape.md": "outside the source folder",
    "escape-dir": "outside the source folder",
    "loopdir": "symlink loop",
    "hr/up": "symlink loop",
    "it/current": "symlink to a folder inside the source",
    "pipe.md": "not a regular file",
}


def hostile_folder(base: Path) -> Path:
    """`base/docs`, the source folder, beside `base/secret`, which it must never read."""
    root = base / "docs"
    secret = base / "secret"
    write(secret, "passwords.md", f"# Secrets\n\nThe vault phrase is {OUTSIDE_MARKER}.\n")
    for rel, text in GOOD.items():
        if rel != "alias.md":
            write(root, rel, text)
    (root / "alias.md").symlink_to("it/vpn.md")
    (root / "loop.md").symlink_to("loop.md")
    (root / "ping.md").symlink_to("pong.md")
    (root / "pong.md").symlink_to("ping.md")
    (root / "dangling.md").symlink_to("gone/missing.md")
    (root / "escape.md").symlink_to(secret / "passwords.md")
    (root / "escape-dir").symlink_to(secret, target_is_directory=True)
    (root / "loopdir").symlink_to("loopdir", target_is_directory=True)
    (root / "hr" / "up").symlink_to("..", target_is_directory=True)  # a cycle back to the root
    (root / "it" / "current").symlink_to("../facilities", target_is_directory=True)  # indexed where it is
    os.mkfifo(root / "pipe.md")  # reading it would block the sync forever
    return root


def good_doc_ids(source: str) -> set[str]:
    return {f"{source}:{rel}" for rel in GOOD}
