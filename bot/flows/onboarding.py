"""/start, /help and /language: who you are and what you can do here."""

from __future__ import annotations

from bot.core.callbacks import cb
from bot.core.enums import Role
from bot.core.messages import Button, Msg
from bot.db.models import User
from bot.i18n import LOCALES
from bot.services.staff import INVITE_PREFIX, Redeem, redeem_invite
from bot.services.uow import UnitOfWork

HELP_TEMPLATE = {
    Role.ENGINEER: "help_engineer",
    Role.SUPERVISOR: "help_supervisor",
    Role.MANAGER: "help_manager",
    Role.DISPATCHER: "help_dispatcher",
    Role.CUSTOMER: "help_customer",
}


def is_invite(payload: str) -> bool:
    return payload.startswith(INVITE_PREFIX)


async def start_with_invite(
    uow: UnitOfWork,
    *,
    code: str,
    telegram_id: int,
    chat_id: int,
    language: str | None,
    locale: str,
) -> User | None:
    """Redeem a staff invite; greet the person or refuse the code clearly."""
    outcome, user = await redeem_invite(
        uow, code=code, telegram_id=telegram_id, chat_id=chat_id, language=language
    )
    if outcome is Redeem.OK and user is not None:
        await uow.out.send(
            Msg(
                "welcome_staff",
                {"name": user.name, "role": user.role, "staff_no": user.staff_no},
                user_id=user.id,
            )
        )
        await send_help(uow, user)
        return user
    template = {
        Redeem.UNKNOWN: "invite_unknown",
        Redeem.USED: "invite_used",
        Redeem.EXPIRED: "invite_expired",
        Redeem.TAKEN: "invite_taken",
    }[outcome]
    await uow.out.send(Msg(template, {}, chat_id=chat_id, locale=locale))
    return None


async def send_help(uow: UnitOfWork, user: User) -> None:
    """Each role sees its own commands."""
    await uow.out.send(Msg(HELP_TEMPLATE[Role(user.role)], {"name": user.name}, user_id=user.id))


async def greet_known(uow: UnitOfWork, user: User) -> None:
    await uow.out.send(Msg("welcome_back", {"name": user.name, "role": user.role}, user_id=user.id))
    await send_help(uow, user)


async def ask_language(uow: UnitOfWork, user: User) -> None:
    buttons = tuple((Button.of(f"lang_{loc}", cb("lang", user.id, "set", loc)),) for loc in LOCALES)
    await uow.out.send(Msg("language_choose", {}, user_id=user.id, buttons=buttons))


async def set_language(uow: UnitOfWork, user: User, locale: str) -> bool:
    """Change the user's language; False (and nothing changed) for an unknown one."""
    if locale not in LOCALES:
        return False
    user.locale = locale
    await uow.session.flush()
    await uow.out.send(Msg("language_set", {}, user_id=user.id, locale=locale))
    return True
