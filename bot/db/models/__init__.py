"""All tables. Each area keeps its models in a module here; importing this package registers
them all on ``Base.metadata`` (Alembic and the tests rely on that)."""

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
    "Offer",
    "Organisation",
    "Outbox",
    "Qualification",
    "Site",
    "Timer",
    "User",
]
