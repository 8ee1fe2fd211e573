"""`Console`: what every console route shares, built once per app from the services."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from bot.core.ratelimit import Windows, make_windows
from bot.web.exports import ExportRunner
from bot.web.markdown import render_markdown, safe_href
from bot.web.promotions import PromotionRunner
from bot.web.security import LoginThrottle, csrf_token, session_user
from feedback.identity import load_key, pseudonymize
from feedback.users import User, user_of_session

if TYPE_CHECKING:
    from bot.web.ports import WebServices
    from feedback.db import Database

HERE = Path(__file__).parent


def make_templates() -> Jinja2Templates:
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    env = templates.env
    env.autoescape = True  # every template, whatever its name: answers and documents are data
    env.filters["markdown"] = render_markdown
    env.filters["safe_href"] = safe_href
    env.filters["short"] = lambda value, n=12: str(value or "")[:n]
    env.filters["when"] = lambda dt: dt.strftime("%Y-%m-%d %H:%M UTC") if dt else ""
    return templates


@dataclass
class Console:
    services: WebServices
    templates: Jinja2Templates = field(default_factory=make_templates)
    _db: Database | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    windows: Windows = field(init=False)  # the public chat's per-address budget, failed sign-ins
    throttle: LoginThrottle = field(init=False)
    exports: ExportRunner = field(init=False)
    promotions: PromotionRunner = field(init=False)  # the Models page's Promote / Roll back
    user_key: bytes = field(init=False)

    def __post_init__(self) -> None:
        web = self.services.settings.web
        self.windows = make_windows(self.services.settings.redis)
        self.throttle = LoginThrottle(self.windows, web.login_attempts, web.login_window)
        self.exports = ExportRunner(lambda: self.db, self.services.settings)
        self.promotions = PromotionRunner(self.services.settings, lambda: self.services.knowledge)
        self.user_key = load_key(self.services.settings)

    @property
    def settings(self) -> Any:
        return self.services.settings

    @property
    def db(self) -> Database:
        """The feedback database (reviews, users), migrated on first use."""
        with self._lock:
            if self._db is None:
                from feedback.db import Database

                db = Database.from_settings(self.settings)
                db.ensure_schema()
                self._db = db
            return self._db

    def close(self) -> None:
        self.windows.close()
        with self._lock:
            if self._db is not None:
                self._db.dispose()
                self._db = None

    # ---- users ----------------------------------------------------------------------------

    @property
    def session_lifetime(self) -> timedelta:
        return timedelta(hours=self.settings.web.session_hours)

    def user(self, request: Request) -> User | None:
        """Blocking (a database read): call from a thread or a sync dependency."""
        lifetime = self.session_lifetime
        return session_user(
            request, lambda token: user_of_session(self.db.sessions, token, lifetime=lifetime)
        )

    def user_hash(self, author: str) -> str:
        return pseudonymize("web", author, self.user_key)

    # ---- pages ----------------------------------------------------------------------------

    def page(self, request: Request, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
        user = getattr(request.state, "user", None)
        context = {
            "request": request,
            "user": user,
            "csrf": csrf_token(request.session),
            "private_chat": self.settings.web.private_chat,
            **context,
        }
        response = self.templates.TemplateResponse(request, template, context, status_code=status_code)
        response.headers["Cache-Control"] = "no-store"
        return response
