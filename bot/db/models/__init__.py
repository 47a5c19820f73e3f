"""All tables. Each area keeps its models in a module here; importing this package registers
them all on ``Base.metadata`` (Alembic and the tests rely on that)."""

import bot.db.models.complaints  # registers the complaint tables
import bot.db.models.customer  # registers the sign-off, PDF and feedback tables
import bot.db.models.followups  # registers the follow-up table
import bot.db.models.supervision  # noqa: F401  (registers the supervision tables)
from bot.db.models.core import (
    NAMING,
    Base,
    Conversation,
    Customer,
    Dispatch,
    DispatchEvent,
    Equipment,
    Inbox,
    Invite,
    LiveSender,
    Offer,
    Organisation,
    Outbox,
    Qualification,
    Site,
    Timer,
    User,
)

__all__ = [
    "NAMING",
    "Base",
    "Conversation",
    "Customer",
    "Dispatch",
    "DispatchEvent",
    "Equipment",
    "Inbox",
    "Invite",
    "LiveSender",
    "Offer",
    "Organisation",
    "Outbox",
    "Qualification",
    "Site",
    "Timer",
    "User",
]
