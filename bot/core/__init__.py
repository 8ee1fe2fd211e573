"""The platform-neutral conversation core. Adapters (Slack, Discord, web) depend on this; it
depends on no chat platform. See ARCHITECTURE.md, "A question from Slack to Qdrant and back"."""

from bot.core.conversation import ConversationService, Outcome, VoteInput, new_correlation_id, thread_key
from bot.core.messages import (
    AnswerReply,
    ErrorReply,
    Ignored,
    IncomingMessage,
    MessageRef,
    Notice,
    Progress,
    Reply,
    Target,
)
from bot.core.ports import (
    AnswerEngine,
    DeliveryError,
    Outbox,
    StateStore,
    Surface,
    ThreadReader,
    UnsupportedReply,
)
from bot.core.state import MemoryStateStore, RedisStateStore, SqliteStateStore, make_state_store

__all__ = [
    "AnswerEngine",
    "AnswerReply",
    "ConversationService",
    "DeliveryError",
    "ErrorReply",
    "Ignored",
    "IncomingMessage",
    "MemoryStateStore",
    "MessageRef",
    "Notice",
    "Outbox",
    "Outcome",
    "Progress",
    "RedisStateStore",
    "Reply",
    "SqliteStateStore",
    "StateStore",
    "Surface",
    "Target",
    "ThreadReader",
    "UnsupportedReply",
    "VoteInput",
    "make_state_store",
    "new_correlation_id",
    "thread_key",
]
