"""DOMAIN.md §1 steps 6–7 and the customer's view of a job.

- **Linking**: a per-job deep link (``/start job_…``) or the customer's own Telegram contact
  whose number matches jobs' contact phone. One Telegram account follows a job; a customer may
  follow several jobs at several sites.
- **Sign-off** (客户签字): when the engineer submits the report (:func:`request_signoff`, called
  by ``job.submit_report``) the customer gets the work order with Confirm / Reject. Confirming
  stores the time, their Telegram id and the sha256 of the exact text they read (the text is
  kept too); rejecting asks the reason and opens a complaint. A customer not on Telegram signs
  the paper form and the engineer uploads a photo of it. Reminder after ``SIGNOFF_REMINDER``,
  supervisor alert after ``SIGNOFF_ESCALATION`` (timer rows, cancelled by the answer).
  After sign-off the work-order PDF goes to the customer and the supervisor(s) on duty.
- **Feedback** (客户服务回馈单): rating 1–5 and an optional comment, once per job; 2 or less
  alerts the supervisor on duty and opens a complaint.

Conversations: ``signoff`` (the customer types a rejection reason), ``feedback`` (the comment),
``paper`` (the engineer sends the photo of the signed form).
"""

from __future__ import annotations

import html
from typing import Any

from bot.core.callbacks import cb
from bot.core.enums import DispatchStatus, Priority, Role
from bot.core.messages import Button, KeyButton, Msg
from bot.db.models import Dispatch, User
from bot.db.models.customer import Feedback, SignOff
from bot.flows import followups
from bot.flows.complaints import complaint_button, open_complaint
from bot.flows.confidential import end_hold
from bot.services import conversations, timers
from bot.services import customers as cust
from bot.services import dispatches as svc
from bot.services.errors import DomainError
from bot.services.phones import mask_phone
from bot.services.staff import supervisors_on_duty
from bot.services.uow import UnitOfWork
from bot.services.workorder_pdf import (
    make_work_order,
    send_work_order,
    warm_up_soon,
    work_order_params,
)

SIGNOFF_REMINDER = "signoff_reminder"
SIGNOFF_ESCALATION = "signoff_escalation"
KINDS = (SIGNOFF_REMINDER, SIGNOFF_ESCALATION)

FLOW_SIGNOFF = "signoff"
FLOW_FEEDBACK = "feedback"
FLOW_PAPER = "paper"

MAX_REASON = 1000
MAX_COMMENT = 1000
RATINGS = range(1, 6)
LOW_RATING = 2
CHUNK = 3500  # a work order longer than this goes out in several messages (Telegram: 4,096)
WORK_ORDER_TEXT = "signoff_workorder"

FINISHED = (DispatchStatus.SIGNED_OFF, DispatchStatus.CLOSED)


def timer_subject(dispatch_id: int) -> str:
    """The timer subject of a job's sign-off clocks (apart from the job's own deadlines)."""
    return f"signoff:{dispatch_id}"


# ---- helpers ------------------------------------------------------------------------------------


def _locale(uow: UnitOfWork, user: User | None) -> str:
    return (user.locale if user else None) or uow.settings.default_locale


async def _reachable(uow: UnitOfWork, user_id: int | None) -> User | None:
    """The user, if they can receive messages in chat."""
    if user_id is None:
        return None
    user = await uow.session.get(User, user_id)
    if user is None or user.chat_id is None or not user.active:
        return None
    return user


async def _engineer(uow: UnitOfWork, dispatch: Dispatch) -> User | None:
    return await uow.session.get(User, dispatch.engineer_id) if dispatch.engineer_id else None


async def job_view(uow: UnitOfWork, dispatch: Dispatch) -> dict[str, Any]:
    """What a customer may see of their job: never the engineer's phone unless allowed."""
    engineer = await _engineer(uow, dispatch)
    site = await svc.site_of(uow, dispatch)
    return {
        "number": dispatch.number,
        "service_type": dispatch.service_type,
        "status": dispatch.status,
        "engineer": engineer.name if engineer else "",
        "staff_no": (engineer.staff_no or "") if engineer else "",
        "engineer_phone": (engineer.phone or "")
        if engineer is not None and uow.settings.show_engineer_phone
        else "",
        "window_start": dispatch.window_start,
        "window_end": dispatch.window_end,
        "eta": dispatch.eta,
        "tz": svc.site_timezone(site, uow.settings.timezone),
    }


def _clean(text: str, limit: int) -> str:
    text = (text or "").strip()
    if not text:
        raise DomainError("err_text_empty")
    if len(text) > limit:
        raise DomainError("err_too_long", limit=limit)
    return text


def _size(text: str) -> int:
    """Length as sent: the HTML escapes count towards Telegram's limit."""
    return len(html.escape(text, quote=False))


def _chunks(text: str, size: int = CHUNK) -> list[str]:
    """Split on line ends into pieces of at most ``size`` (as sent); long lines are cut."""
    lines: list[str] = []
    for line in text.split("\n"):
        while _size(line) > size:
            cut = 0
            while _size(line[: cut + 1]) <= size:
                cut += 1
            lines.append(line[:cut])
            line = line[cut:]
        lines.append(line)
    pieces: list[str] = []
    current: str | None = None
    for line in lines:
        candidate = line if current is None else f"{current}\n{line}"
        if current is not None and _size(candidate) > size:
            pieces.append(current)
            current = line
        else:
            current = candidate
    pieces.append(current or "")
    return pieces


SHARE_PHONE = ((KeyButton("share_phone", request_contact=True),),)


# ---- linking ------------------------------------------------------------------------------------


async def greet_stranger(uow: UnitOfWork, *, chat_id: int, locale: str) -> None:
    """/start from someone we do not know: staff use their invite; customers share their phone."""
    await uow.out.send(
        Msg("cust_welcome_stranger", {}, chat_id=chat_id, locale=locale, keyboard=SHARE_PHONE)
    )


def _refuse_staff(actor: User | None) -> None:
    if actor is not None and Role(actor.role).is_staff:
        raise DomainError("cust_staff_account")


async def link_by_code(
    uow: UnitOfWork,
    actor: User | None,
    *,
    code: str,
    telegram_id: int,
    chat_id: int,
    language: str | None,
    first_name: str,
) -> None:
    """``/start job_…``: follow the job of this link (one Telegram account per job)."""
    dispatch = await cust.dispatch_by_link(uow, code)
    if dispatch is None or dispatch.status not in cust.LINKABLE_STATUSES:
        raise DomainError("cust_link_unknown")
    _refuse_staff(actor)
    if dispatch.customer_user_id is not None and (
        actor is None or dispatch.customer_user_id != actor.id
    ):
        raise DomainError("cust_link_taken", number=dispatch.number)
    user = actor or await cust.customer_user(
        uow,
        telegram_id=telegram_id,
        chat_id=chat_id,
        name=first_name or dispatch.contact_name,
        language=language,
    )
    newly = dispatch.customer_user_id is None
    if newly:
        await _link(uow, dispatch, user, via="link")
    await _tell_linked(uow, user, [dispatch], newly=[dispatch] if newly else [])


async def _link(uow: UnitOfWork, dispatch: Dispatch, customer: User, *, via: str) -> None:
    """The customer follows this job from now on (recorded in its history)."""
    await svc.record(
        uow,
        dispatch,
        "customer_linked",
        actor=customer,
        changes={"customer_user_id": customer.id},
        via=via,
    )


async def link_by_contact(
    uow: UnitOfWork,
    actor: User | None,
    *,
    telegram_id: int,
    chat_id: int,
    language: str | None,
    first_name: str,
    phone: str,
    contact_user_id: int | None,
    locale: str,
) -> None:
    """The customer shared a contact: their own number links every job with that phone."""
    if contact_user_id != telegram_id:
        await uow.out.send(
            Msg(
                "cust_contact_not_own",
                {},
                chat_id=chat_id,
                locale=_locale(uow, actor) if actor else locale,
                keyboard=SHARE_PHONE,
            )
        )
        return
    _refuse_staff(actor)
    numbers = cust.phones_of_contact(phone, uow.settings.phone_region)
    jobs = await cust.jobs_for_phones(uow, numbers)
    number = next((job.contact_phone for job in jobs), numbers[0] if numbers else None)
    user = actor or await cust.customer_user(
        uow,
        telegram_id=telegram_id,
        chat_id=chat_id,
        name=first_name or (jobs[0].contact_name if jobs else ""),
        language=language,
        phone=number,
    )
    if number and not user.phone:
        user.phone = number
    mine = [job for job in jobs if job.customer_user_id in (None, user.id)]
    newly = [job for job in mine if job.customer_user_id is None]
    for job in newly:
        await _link(uow, job, user, via="contact")
    if not mine:
        await uow.out.send(
            Msg(
                "cust_contact_no_match",
                {"phone": mask_phone(number) if number else "", "elsewhere": len(jobs)},
                user_id=user.id,
                buttons=((complaint_button(user.id),),),
            )
        )
        return
    await _tell_linked(uow, user, mine, newly=newly)


async def _tell_linked(
    uow: UnitOfWork, user: User, jobs: list[Dispatch], *, newly: list[Dispatch]
) -> None:
    """Where each job stands now; a job waiting for sign-off gets its work order at once."""
    views = [await job_view(uow, job) for job in jobs]
    await uow.out.send(
        Msg("cust_linked", {"jobs": views, "newly": len(newly)}, user_id=user.id, keyboard=())
    )
    for job in newly:
        if job.status == DispatchStatus.AWAITING_SIGNOFF:
            await send_signoff_request(uow, job)
        elif job.status in FINISHED and await cust.feedback_of(uow, job.id) is None:
            await ask_feedback(uow, job)


# ---- /myjobs ------------------------------------------------------------------------------------


async def my_jobs(uow: UnitOfWork, customer: User) -> None:
    """The customer's own jobs: status, engineer name and window; nothing else."""
    jobs = await cust.jobs_of_customer(uow, customer.id)
    items = []
    for job in jobs:
        view = await job_view(uow, job)
        items.append(
            {
                key: view[key]
                for key in ("number", "status", "engineer", "window_start", "window_end", "tz")
            }
        )
    buttons = tuple(
        (Button.of("review_signoff", cb("cj", job.id, "sign"), number=job.number),)
        for job in jobs
        if job.status == DispatchStatus.AWAITING_SIGNOFF
    )
    await uow.out.send(
        Msg(
            "cust_myjobs",
            {"jobs": items},
            user_id=customer.id,
            buttons=buttons or None,
            keyboard=None if jobs else SHARE_PHONE,
        )
    )


async def _customer_job(uow: UnitOfWork, customer: User, dispatch_id: int) -> Dispatch:
    """A job this customer follows, or a refusal that tells nothing about it."""
    dispatch = await svc.get_dispatch(uow, dispatch_id, lock=True)
    if dispatch is None or dispatch.customer_user_id != customer.id:
        raise DomainError("err_not_yours")
    return dispatch


async def review_signoff(uow: UnitOfWork, customer: User, dispatch_id: int) -> None:
    """From /myjobs: the work order again (the previous one can no longer be confirmed)."""
    dispatch = await _customer_job(uow, customer, dispatch_id)
    if dispatch.status != DispatchStatus.AWAITING_SIGNOFF:
        raise DomainError("signoff_already", number=dispatch.number)
    await send_signoff_request(uow, dispatch)
    await _arm_timers(uow, dispatch)


# ---- sign-off: the request ----------------------------------------------------------------------


async def _arm_timers(uow: UnitOfWork, dispatch: Dispatch) -> None:
    subject = timer_subject(dispatch.id)
    now = uow.clock.now()
    await timers.cancel(uow, subject=subject, kinds=KINDS)
    for kind, delay in (
        (SIGNOFF_REMINDER, uow.settings.signoff_reminder),
        (SIGNOFF_ESCALATION, uow.settings.signoff_escalation),
    ):
        await timers.schedule(
            uow,
            kind=kind,
            subject=subject,
            due_at=now + delay,
            payload={"dispatch_id": dispatch.id},
        )


async def request_signoff(uow: UnitOfWork, dispatch: Dispatch) -> None:
    """The report is in (job.submit_report): the customer signs off in chat, or on paper.

    Starts the reminder and escalation clocks; the engineer is offered the paper-form upload
    either way (a customer may prefer to sign the paper form).
    """
    await _arm_timers(uow, dispatch)
    warm_up_soon()  # the work-order PDF will be wanted soon
    in_chat = await send_signoff_request(uow, dispatch)
    engineer = await _engineer(uow, dispatch)
    if engineer is not None:
        await uow.out.send(
            Msg(
                "signoff_engineer_paper",
                {"number": dispatch.number, "in_chat": in_chat},
                user_id=engineer.id,
                buttons=((Button.of("paper_upload", cb("pap", dispatch.id, "up")),),),
            )
        )


def _answer_buttons(signoff: SignOff) -> tuple[tuple[Button, ...], ...]:
    return (
        (
            Button.of("signoff_confirm", cb("so", signoff.id, "ok")),
            Button.of("signoff_reject", cb("so", signoff.id, "no")),
        ),
    )


async def work_order_text(uow: UnitOfWork, dispatch: Dispatch, locale: str) -> str:
    """The work order as the customer reads it in chat (plain text, their language)."""
    params = await work_order_params(uow, dispatch)
    return html.unescape(uow.services.renderer.render(WORK_ORDER_TEXT, locale, params))


async def send_signoff_request(uow: UnitOfWork, dispatch: Dispatch) -> bool:
    """The work order with Confirm / Reject to the job's customer; False when not in chat."""
    customer = await _reachable(uow, dispatch.customer_user_id)
    if customer is None or dispatch.status != DispatchStatus.AWAITING_SIGNOFF:
        return False
    locale = _locale(uow, customer)
    text = await work_order_text(uow, dispatch, locale)
    await cust.supersede_pending(uow, dispatch.id)
    signoff = SignOff(
        dispatch_id=dispatch.id,
        method="telegram",
        status="pending",
        customer_user_id=customer.id,
        locale=locale,
        text=text,
        text_sha256=cust.text_hash(text),
        created_at=uow.clock.now(),
    )
    uow.session.add(signoff)
    await uow.session.flush()
    photos = tuple(str(p) for p in (dispatch.report.get("final") or {}).get("photos") or [])
    if photos:
        await uow.out.send(
            Msg(
                "signoff_photos",
                {"number": dispatch.number, "count": len(photos)},
                user_id=customer.id,
                locale=locale,
                photos=photos,
            )
        )
    pieces = _chunks(text)
    for n, piece in enumerate(pieces[:-1]):
        await uow.out.send(
            Msg(
                "signoff_part",
                {"number": dispatch.number, "text": piece, "first": n == 0},
                user_id=customer.id,
                locale=locale,
            )
        )
    await uow.out.send(
        Msg(
            "signoff_request",
            {"number": dispatch.number, "text": pieces[-1], "continued": len(pieces) > 1},
            user_id=customer.id,
            locale=locale,
            buttons=_answer_buttons(signoff),
        )
    )
    await svc.record(uow, dispatch, "signoff_requested", signoff_id=signoff.id)
    return True


# ---- sign-off: the customer's answer ------------------------------------------------------------


async def _customer_signoff(
    uow: UnitOfWork, customer: User, signoff_id: int
) -> tuple[SignOff, Dispatch]:
    """The customer's own pending work order and its job, checked."""
    signoff = await uow.session.get(SignOff, signoff_id)
    if signoff is None or signoff.customer_user_id != customer.id:
        raise DomainError("err_not_yours")
    dispatch = await _customer_job(uow, customer, signoff.dispatch_id)
    if dispatch.status != DispatchStatus.AWAITING_SIGNOFF:
        raise DomainError("signoff_already", number=dispatch.number)
    if signoff.status == "superseded":
        raise DomainError("signoff_superseded", number=dispatch.number)
    if signoff.status != "pending":
        raise DomainError("signoff_answered", number=dispatch.number)
    return signoff, dispatch


async def confirm_signoff(
    uow: UnitOfWork, customer: User, signoff_id: int, *, telegram_id: int
) -> None:
    """Confirm: the Telegram identity is the signature (time, account, hash of the text)."""
    signoff, dispatch = await _customer_signoff(uow, customer, signoff_id)
    now = uow.clock.now()
    signoff.status = "confirmed"
    signoff.answered_at = now
    signoff.telegram_id = telegram_id
    await conversations.leave(uow, customer.id, FLOW_SIGNOFF)
    view = await job_view(uow, dispatch)
    await uow.out.send(
        Msg(
            "signoff_confirmed",
            {"number": dispatch.number, "at": now, "sha256": signoff.text_sha256, "tz": view["tz"]},
            user_id=customer.id,
        )
    )
    await _complete(uow, dispatch, signoff, actor=customer, signer=customer.name)


async def ask_reject_reason(uow: UnitOfWork, customer: User, signoff_id: int) -> None:
    signoff, dispatch = await _customer_signoff(uow, customer, signoff_id)
    await conversations.enter(uow, customer.id, FLOW_SIGNOFF, "reason", signoff_id=signoff.id)
    await uow.out.send(
        Msg(
            "signoff_ask_reason",
            {"number": dispatch.number, "limit": MAX_REASON},
            user_id=customer.id,
        )
    )


async def reject_signoff(
    uow: UnitOfWork, customer: User, signoff_id: int, reason: str, *, telegram_id: int
) -> None:
    """Reject with a reason: recorded, the engineer told, a complaint opened on the job."""
    try:
        signoff, dispatch = await _customer_signoff(uow, customer, signoff_id)
    except DomainError as refusal:
        # The work order was answered meanwhile (signed on paper, say): the typed reason has
        # nothing left to answer. Leave the conversation (a refusal would roll that back).
        await conversations.leave(uow, customer.id, FLOW_SIGNOFF)
        await uow.out.send(Msg(refusal.template, refusal.params, user_id=customer.id))
        return
    text = _clean(reason, MAX_REASON)
    signoff.status = "rejected"
    signoff.reason = text
    signoff.answered_at = uow.clock.now()
    signoff.telegram_id = telegram_id
    await conversations.leave(uow, customer.id, FLOW_SIGNOFF)
    await svc.record(uow, dispatch, "signoff_rejected", actor=customer, signoff_id=signoff.id)
    await timers.cancel(uow, subject=timer_subject(dispatch.id), kinds=KINDS)
    await uow.out.send(
        Msg("signoff_rejected_thanks", {"number": dispatch.number}, user_id=customer.id)
    )
    engineer = await _engineer(uow, dispatch)
    if engineer is not None:
        await uow.out.send(
            Msg(
                "signoff_rejected_engineer",
                {"number": dispatch.number, "reason": text},
                user_id=engineer.id,
            )
        )
    await open_complaint(
        uow,
        customer=customer,
        dispatch=dispatch,
        category="quality",
        description=text,
        source="signoff_rejected",
    )


# ---- sign-off on paper (the customer is not on Telegram) ----------------------------------------


async def _engineers_waiting_job(uow: UnitOfWork, engineer: User, dispatch_id: int) -> Dispatch:
    dispatch = await svc.get_dispatch(uow, dispatch_id, lock=True)
    if dispatch is None or dispatch.engineer_id != engineer.id:
        raise DomainError("err_not_yours")
    if dispatch.status in FINISHED:
        raise DomainError("signoff_already", number=dispatch.number)
    if dispatch.status != DispatchStatus.AWAITING_SIGNOFF:
        raise DomainError("err_job_state", number=dispatch.number, status=dispatch.status)
    return dispatch


async def start_paper(uow: UnitOfWork, engineer: User, dispatch_id: int) -> None:
    """The engineer will send a photo of the paper form the customer signed."""
    dispatch = await _engineers_waiting_job(uow, engineer, dispatch_id)
    await conversations.enter(uow, engineer.id, FLOW_PAPER, "photo", dispatch_id=dispatch.id)
    await uow.out.send(Msg("signoff_paper_ask", {"number": dispatch.number}, user_id=engineer.id))


async def paper_jobs(uow: UnitOfWork, engineer: User) -> None:
    """/paper: the engineer's jobs waiting for a sign-off, each with an upload button."""
    jobs = [
        job
        for job in await svc.open_jobs_of(uow, engineer.id)
        if job.status == DispatchStatus.AWAITING_SIGNOFF
    ]
    buttons = tuple(
        (Button.of("paper_upload_for", cb("pap", job.id, "up"), number=job.number),) for job in jobs
    )
    await uow.out.send(
        Msg(
            "signoff_paper_jobs", {"count": len(jobs)}, user_id=engineer.id, buttons=buttons or None
        )
    )


async def paper_signed(uow: UnitOfWork, engineer: User, dispatch_id: int, file_id: str) -> None:
    """The photo of the signed paper form: the job is signed off "on paper"."""
    dispatch = await _engineers_waiting_job(uow, engineer, dispatch_id)
    customer = (
        await uow.session.get(User, dispatch.customer_user_id)
        if dispatch.customer_user_id
        else None
    )
    locale = _locale(uow, customer)
    text = await work_order_text(uow, dispatch, locale)
    now = uow.clock.now()
    await cust.supersede_pending(uow, dispatch.id)
    signoff = SignOff(
        dispatch_id=dispatch.id,
        method="paper",
        status="confirmed",
        customer_user_id=dispatch.customer_user_id,
        locale=locale,
        text=text,
        text_sha256=cust.text_hash(text),
        created_at=now,
        answered_at=now,
        photo_file_id=file_id[:255],
        recorded_by=engineer.id,
    )
    uow.session.add(signoff)
    await uow.session.flush()
    await conversations.leave(uow, engineer.id, FLOW_PAPER)
    await uow.out.send(
        Msg("signoff_paper_recorded", {"number": dispatch.number}, user_id=engineer.id)
    )
    await _complete(uow, dispatch, signoff, actor=engineer, signer=dispatch.contact_name)


# ---- after the sign-off -------------------------------------------------------------------------


async def _complete(
    uow: UnitOfWork, dispatch: Dispatch, signoff: SignOff, *, actor: User, signer: str
) -> None:
    """Signed off: the record on the job, the PDF to customer and service centre, feedback."""
    await cust.supersede_pending(uow, dispatch.id)
    at = signoff.answered_at or uow.clock.now()
    record = {
        "id": signoff.id,
        "method": signoff.method,
        "at": at.isoformat(),
        "sha256": signoff.text_sha256,
        "telegram_id": signoff.telegram_id,
        "customer_user_id": signoff.customer_user_id,
    }
    await svc.record(
        uow,
        dispatch,
        "signed_off",
        actor=actor,
        to_status=DispatchStatus.SIGNED_OFF,
        changes={"report": {**dispatch.report, "signoff": record}},
        method=signoff.method,
        signoff_id=signoff.id,
        sha256=signoff.text_sha256,
    )
    await timers.cancel(uow, subject=timer_subject(dispatch.id), kinds=KINDS)
    if dispatch.engineer_id is not None:
        await end_hold(uow, dispatch, dispatch.engineer_id)  # §7: their work is over
    customer = await _reachable(uow, dispatch.customer_user_id)
    pdf = await make_work_order(uow, dispatch, signoff, locale=signoff.locale, signer=signer)
    await svc.record(uow, dispatch, "work_order_pdf", pdf_id=pdf.id, sha256=pdf.sha256)
    engineer = await _engineer(uow, dispatch)
    params = {
        "number": dispatch.number,
        "method": signoff.method,
        "customer": (await svc.customer_of(uow, dispatch)).name,
        "engineer": engineer.name if engineer else "",
    }
    if customer is not None:
        await send_work_order(
            uow, pdf, user_id=customer.id, caption="signoff_pdf_caption", params=params
        )
    for supervisor in await supervisors_on_duty(uow):
        await send_work_order(
            uow, pdf, user_id=supervisor.id, caption="signoff_pdf_caption_staff", params=params
        )
    if engineer is not None and signoff.method == "telegram":
        await uow.out.send(
            Msg("signoff_engineer_done", {"number": dispatch.number}, user_id=engineer.id)
        )
    if customer is not None:
        await ask_feedback(uow, dispatch)
    await followups.job_completed(uow, dispatch)  # the satisfaction follow-up (§3)


# ---- sign-off clocks ----------------------------------------------------------------------------


async def _remind_customer(uow: UnitOfWork, dispatch: Dispatch, customer: User) -> None:
    signoff = await cust.pending_signoff(uow, dispatch.id)
    if signoff is None:
        await send_signoff_request(uow, dispatch)
        return
    await uow.out.send(
        Msg(
            "signoff_reminder",
            {"number": dispatch.number},
            user_id=customer.id,
            buttons=_answer_buttons(signoff),
        )
    )


async def signoff_reminder(uow: UnitOfWork, dispatch_id: int) -> None:
    """No answer yet: remind the customer (or, with no customer in chat, the engineer)."""
    dispatch = await svc.get_dispatch(uow, dispatch_id)
    if dispatch is None or dispatch.status != DispatchStatus.AWAITING_SIGNOFF:
        return
    customer = await _reachable(uow, dispatch.customer_user_id)
    if customer is not None:
        await _remind_customer(uow, dispatch, customer)
    elif dispatch.engineer_id is not None:
        await uow.out.send(
            Msg(
                "signoff_paper_reminder",
                {"number": dispatch.number},
                user_id=dispatch.engineer_id,
                buttons=((Button.of("paper_upload", cb("pap", dispatch.id, "up")),),),
            )
        )
    await svc.record(uow, dispatch, "signoff_reminder_sent", to_customer=customer is not None)


async def signoff_escalation(uow: UnitOfWork, dispatch_id: int) -> None:
    """Still not signed off: the supervisor(s) on duty are alerted, with a button to act."""
    dispatch = await svc.get_dispatch(uow, dispatch_id)
    if dispatch is None or dispatch.status != DispatchStatus.AWAITING_SIGNOFF:
        return
    customer = await _reachable(uow, dispatch.customer_user_id)
    engineer = await _engineer(uow, dispatch)
    view = await job_view(uow, dispatch)
    params = {
        "number": dispatch.number,
        "customer": (await svc.customer_of(uow, dispatch)).name,
        "engineer": engineer.name if engineer else "",
        "staff_no": (engineer.staff_no or "") if engineer else "",
        "reported_at": dispatch.reported_at,
        "in_chat": customer is not None,
        "tz": view["tz"],
    }
    buttons = (
        ((Button.of("remind_customer", cb("sos", dispatch.id, "rem")),),)
        if customer is not None
        else None
    )
    await svc.record(uow, dispatch, "signoff_overdue")
    for supervisor in await supervisors_on_duty(uow):
        await uow.out.send(
            Msg(
                "signoff_overdue",
                params,
                user_id=supervisor.id,
                buttons=buttons,
                priority=Priority.URGENT,
            )
        )


async def supervisor_reminds(uow: UnitOfWork, supervisor: User, dispatch_id: int) -> None:
    """The supervisor's button on the escalation: remind the customer now."""
    dispatch = await svc.get_dispatch(uow, dispatch_id)
    if dispatch is None or dispatch.status != DispatchStatus.AWAITING_SIGNOFF:
        raise DomainError("err_escalation_over")
    customer = await _reachable(uow, dispatch.customer_user_id)
    if customer is None:
        raise DomainError("err_escalation_over")
    await _remind_customer(uow, dispatch, customer)
    await svc.record(uow, dispatch, "signoff_reminded", actor=supervisor)
    await uow.out.send(Msg("signoff_reminded", {"number": dispatch.number}, user_id=supervisor.id))


# ---- feedback -----------------------------------------------------------------------------------


def feedback_ref(dispatch_id: int) -> str:
    return f"feedback:{dispatch_id}"


async def ask_feedback(uow: UnitOfWork, dispatch: Dispatch) -> None:
    """Rating 1–5 buttons to the job's customer (once there is no feedback yet)."""
    if dispatch.customer_user_id is None or await cust.feedback_of(uow, dispatch.id):
        return
    engineer = await _engineer(uow, dispatch)
    await uow.out.send(
        Msg(
            "feedback_ask",
            {"number": dispatch.number, "engineer": engineer.name if engineer else ""},
            user_id=dispatch.customer_user_id,
            buttons=(
                tuple(Button.of("rate", cb("fb", dispatch.id, "r", n), n=n) for n in RATINGS),
            ),
            ref=feedback_ref(dispatch.id),
        )
    )


async def rate(uow: UnitOfWork, customer: User, dispatch_id: int, raw: str) -> None:
    """A rating button: stored once; 2 or less alerts the supervisor and opens a complaint."""
    if not raw.isdigit() or int(raw) not in RATINGS:
        raise DomainError("err_stale_button")  # forged: nothing changes
    rating = int(raw)
    dispatch = await _customer_job(uow, customer, dispatch_id)
    if dispatch.status not in FINISHED:
        raise DomainError("feedback_not_yet", number=dispatch.number)
    if await cust.feedback_of(uow, dispatch.id) is not None:
        raise DomainError("feedback_already", number=dispatch.number)
    now = uow.clock.now()
    uow.session.add(
        Feedback(
            dispatch_id=dispatch.id,
            customer_user_id=customer.id,
            engineer_id=dispatch.engineer_id,
            rating=rating,
            created_at=now,
        )
    )
    await uow.session.flush()
    await svc.record(uow, dispatch, "feedback", actor=customer, rating=rating)
    await uow.out.send(
        Msg(
            "feedback_rated",
            {"number": dispatch.number, "rating": rating},
            user_id=customer.id,
            edit=feedback_ref(dispatch.id),
            buttons=(),
        )
    )
    if rating <= LOW_RATING:
        await _low_rating(uow, dispatch, customer, rating)
    await conversations.enter(uow, customer.id, FLOW_FEEDBACK, "comment", dispatch_id=dispatch.id)
    await uow.out.send(
        Msg(
            "feedback_ask_comment",
            {"number": dispatch.number, "limit": MAX_COMMENT, "low": rating <= LOW_RATING},
            user_id=customer.id,
            buttons=((Button.of("feedback_skip", cb("fb", dispatch.id, "skip")),),),
        )
    )


async def _low_rating(uow: UnitOfWork, dispatch: Dispatch, customer: User, rating: int) -> None:
    engineer = await _engineer(uow, dispatch)
    params = {
        "number": dispatch.number,
        "rating": rating,
        "customer": (await svc.customer_of(uow, dispatch)).name,
        "engineer": engineer.name if engineer else "",
        "staff_no": (engineer.staff_no or "") if engineer else "",
    }
    for supervisor in await supervisors_on_duty(uow):
        await uow.out.send(
            Msg("feedback_low_alert", params, user_id=supervisor.id, priority=Priority.URGENT)
        )
    await open_complaint(
        uow,
        customer=customer,
        dispatch=dispatch,
        category="quality",
        description=f"{rating}/5",
        source="low_rating",
    )


async def _open_feedback(
    uow: UnitOfWork, customer: User, dispatch_id: int
) -> tuple[Feedback, Dispatch] | None:
    """The customer's feedback still waiting for its comment; else the conversation ends."""
    feedback = await cust.feedback_of(uow, dispatch_id)
    dispatch = await svc.get_dispatch(uow, dispatch_id)
    if (
        feedback is None
        or dispatch is None
        or feedback.customer_user_id != customer.id
        or dispatch.customer_user_id != customer.id
        or feedback.comment is not None
    ):
        await conversations.leave(uow, customer.id, FLOW_FEEDBACK)
        await uow.out.send(Msg("err_stale_button", {}, user_id=customer.id))
        return None
    return feedback, dispatch


async def comment(uow: UnitOfWork, customer: User, dispatch_id: int, text: str) -> None:
    """The optional comment (at most MAX_COMMENT characters), once."""
    found = await _open_feedback(uow, customer, dispatch_id)
    if found is None:
        return
    feedback, dispatch = found
    feedback.comment = _clean(text, MAX_COMMENT)
    feedback.commented_at = uow.clock.now()
    await conversations.leave(uow, customer.id, FLOW_FEEDBACK)
    await svc.record(uow, dispatch, "feedback_comment", actor=customer)
    await uow.out.send(Msg("feedback_thanks", {"number": dispatch.number}, user_id=customer.id))
    if feedback.rating <= LOW_RATING:
        engineer = await _engineer(uow, dispatch)
        for supervisor in await supervisors_on_duty(uow):
            await uow.out.send(
                Msg(
                    "feedback_low_comment",
                    {
                        "number": dispatch.number,
                        "rating": feedback.rating,
                        "comment": feedback.comment,
                        "engineer": engineer.name if engineer else "",
                    },
                    user_id=supervisor.id,
                    priority=Priority.URGENT,
                )
            )


async def skip_comment(uow: UnitOfWork, customer: User, dispatch_id: int) -> None:
    """No comment: the feedback is complete with its rating."""
    step = await conversations.current(uow, customer.id)
    if step is None or step.flow != FLOW_FEEDBACK or step.data.get("dispatch_id") != dispatch_id:
        raise DomainError("err_stale_button")
    found = await _open_feedback(uow, customer, dispatch_id)
    if found is None:
        return
    await conversations.leave(uow, customer.id, FLOW_FEEDBACK)
    await uow.out.send(Msg("feedback_thanks", {"number": found[1].number}, user_id=customer.id))
