"""Status machines and vocabularies shared by flows, services, keyboards and routes."""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    ENGINEER = "engineer"
    SUPERVISOR = "supervisor"
    MANAGER = "manager"
    DISPATCHER = "dispatcher"
    CUSTOMER = "customer"

    @property
    def is_staff(self) -> bool:
        return self is not Role.CUSTOMER


STAFF_ROLES = (Role.ENGINEER, Role.SUPERVISOR, Role.MANAGER, Role.DISPATCHER)


class ServiceType(StrEnum):
    INSTALLATION = "installation"
    STARTUP = "startup"
    REPAIR = "repair"
    MAINTENANCE = "maintenance"


class DispatchStatus(StrEnum):
    NEW = "new"  # created, nobody offered yet
    OFFERED = "offered"  # waiting for an engineer's answer
    UNASSIGNED = "unassigned"  # nobody left to offer; a supervisor must assign
    ACCEPTED = "accepted"  # engineer must contact the customer
    CONTACTED = "contacted"  # customer reached, ETA given
    EN_ROUTE = "en_route"
    ON_SITE = "on_site"
    AWAITING_SIGNOFF = "awaiting_signoff"
    SIGNED_OFF = "signed_off"
    CLOSED = "closed"
    CANCELLED = "cancelled"


OPEN_DISPATCH_STATUSES = frozenset(
    {
        DispatchStatus.NEW,
        DispatchStatus.OFFERED,
        DispatchStatus.UNASSIGNED,
        DispatchStatus.ACCEPTED,
        DispatchStatus.CONTACTED,
        DispatchStatus.EN_ROUTE,
        DispatchStatus.ON_SITE,
    }
)

# Statuses in which the engineer holds the job (may see the customer's phone and address).
HELD_DISPATCH_STATUSES = frozenset(
    {
        DispatchStatus.ACCEPTED,
        DispatchStatus.CONTACTED,
        DispatchStatus.EN_ROUTE,
        DispatchStatus.ON_SITE,
        DispatchStatus.AWAITING_SIGNOFF,
    }
)


class OfferStatus(StrEnum):
    PENDING = "pending"
    ACCEPTED = "accepted"
    DECLINED = "declined"
    EXPIRED = "expired"
    WITHDRAWN = "withdrawn"


class Outcome(StrEnum):
    FIXED = "fixed"
    NEEDS_PARTS = "needs_parts"
    RETURN_VISIT = "return_visit"
    CANNOT_FIX = "cannot_fix"


class OutboxStatus(StrEnum):
    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"


class InboxStatus(StrEnum):
    PENDING = "pending"
    DONE = "done"
    FAILED = "failed"


class TimerStatus(StrEnum):
    PENDING = "pending"
    DONE = "done"
    CANCELLED = "cancelled"
    FAILED = "failed"


class Priority:
    """Outbox priority: lower goes first."""

    URGENT = 0
    NORMAL = 5
    BULK = 9
