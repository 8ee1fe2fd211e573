"""What the web console needs from the process: the settings and the shared services.

The console is an adapter: it receives these (`create_app(services)`) and never imports the
wiring that builds them (`bot.services`). `bot.services.Services` satisfies this protocol.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from bot.core.conversation import ConversationService
    from bot.core.ports import KnowledgeBase, StateStore
    from config.settings import Settings
    from workers.ports import TaskClient


class WebServices(Protocol):
    @property
    def settings(self) -> Settings: ...

    @property
    def knowledge(self) -> KnowledgeBase: ...

    @property
    def tasks(self) -> TaskClient: ...

    @property
    def state(self) -> StateStore: ...

    @property
    def conversation(self) -> ConversationService: ...
