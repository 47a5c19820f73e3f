"""The HTTP app: Telegram webhook, the back office's REST API, health."""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from fastapi import Depends, FastAPI, Header, HTTPException, Path, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field
from sqlalchemy import text
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bot.db.models import Dispatch, User
from bot.flows.intake import create_dispatch
from bot.services import inbox
from bot.services.context import Services
from bot.services.customers import customer_link
from bot.services.errors import FieldError
from bot.services.intake import DispatchIn, field_errors

bearer = HTTPBearer(auto_error=False)
log = logging.getLogger(__name__)


MAX_ID = 2**63 - 1  # ids are 64-bit integers in the database
# A dispatch or a Telegram update is a few kilobytes: a body past this is refused unread.
MAX_BODY = 1024 * 1024

ERROR_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
}


class FieldProblem(BaseModel):
    field: str = Field(description="The request field, dotted when nested (`serials.0`)")
    message: str = Field(description="What is wrong with it, for a person")


class Problem(BaseModel):
    """The one error body of this API: every 4xx (and the unexpected 5xx) answers with it."""

    error: str = Field(description="What went wrong, for a person")
    code: str = Field(
        description="For programs: unauthorized, not_found, invalid_request (the request does "
        "not fit the schema), invalid_dispatch (it fits, but a field is wrong: see `fields`), "
        "bad_request (the body cannot be read), method_not_allowed, internal"
    )
    fields: list[FieldProblem] = Field(
        default_factory=list, description="One entry per bad field; empty when none applies"
    )


class Health(BaseModel):
    status: str = Field(description="`ok` or `degraded`")
    database: str = Field(description="`ok` or `unreachable`")


def problem(
    status: int,
    message: str,
    *,
    code: str | None = None,
    fields: list[dict[str, str]] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """A ``Problem`` response (see the model above)."""
    body = {
        "error": message,
        "code": code or ERROR_CODES.get(status, f"http_{status}"),
        "fields": fields or [],
    }
    return JSONResponse(body, status_code=status, headers=headers)


class EngineerOut(BaseModel):
    name: str
    staff_no: str | None


class DispatchOut(BaseModel):
    id: int
    number: str
    status: str
    service_type: str
    customer: str
    window_start: datetime
    window_end: datetime
    engineer: EngineerOut | None
    customer_link: str | None = None


class BodyLimit:
    """Answers 413 to a request whose body is over ``limit`` bytes, without reading more of it
    than that: at once by its Content-Length, or as it streams in when it has none."""

    def __init__(self, app: ASGIApp, limit: int = MAX_BODY) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        message = f"the request body is over {self.limit} bytes"
        length = dict(scope["headers"]).get(b"content-length", b"0")
        if not length.isdigit() or int(length) > self.limit:
            await problem(413, message)(scope, receive, send)
            return
        received = 0

        async def limited() -> Message:
            nonlocal received
            event = await receive()
            if event["type"] == "http.request":
                received += len(event.get("body", b""))
                if received > self.limit:  # the route's handler answers 413 (Problem body)
                    raise HTTPException(413, message)
            return event

        await self.app(scope, limited, send)


def build_app(
    services: Services, *, on_update: Callable[[list[int | None]], None] | None = None
) -> FastAPI:
    """Build the app for ``services`` (no engine or bot is created at import time)."""
    app = FastAPI(title="fieldbot", version="1", docs_url="/docs", openapi_url="/openapi.json")
    app.add_middleware(BodyLimit)
    settings = services.settings

    def token_ok(request: Request) -> bool:
        """The request carries ``Authorization: Bearer <API_TOKEN>`` (compared in constant time)."""
        expected = settings.api_token
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if not expected or scheme.lower() != "bearer":
            return False
        return hmac.compare_digest(given.strip().encode(), expected.encode())

    def unauthorized() -> JSONResponse:
        return problem(401, "missing or wrong API token", headers={"WWW-Authenticate": "Bearer"})

    def needs_token(request: Request) -> bool:
        return request.url.path.startswith("/api/") and not token_ok(request)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        if needs_token(request):  # say nothing about the body to a caller without the token
            return unauthorized()
        fields = [
            {"field": f, "message": m}
            for f, m in field_errors(exc.errors(), skip=("body", "path", "query", "header"))
        ]
        if request.url.path == "/api/v1/dispatches":
            return problem(422, "invalid dispatch", code="invalid_dispatch", fields=fields)
        return problem(422, "invalid request", fields=fields)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code != 401 and needs_token(request):
            return unauthorized()
        if exc.status_code == 400:
            message = "the request body cannot be read (send UTF-8 JSON)"
        else:
            message = str(exc.detail)
        return problem(exc.status_code, message, headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error in the HTTP app")
        return problem(500, "internal error; it has been logged", code="internal")

    def require_token(
        request: Request,
        _credentials: HTTPAuthorizationCredentials | None = Depends(bearer),
    ) -> None:
        if not token_ok(request):
            raise HTTPException(
                status_code=401,
                detail="missing or wrong API token",
                headers={"WWW-Authenticate": "Bearer"},
            )

    async def dispatch_out(uow: Any, dispatch: Dispatch, link: str | None = None) -> DispatchOut:
        from bot.services.dispatches import customer_of

        customer = await customer_of(uow, dispatch)
        engineer = (
            await uow.session.get(User, dispatch.engineer_id) if dispatch.engineer_id else None
        )
        return DispatchOut(
            id=dispatch.id,
            number=dispatch.number,
            status=dispatch.status,
            service_type=dispatch.service_type,
            customer=customer.name,
            window_start=dispatch.window_start,
            window_end=dispatch.window_end,
            engineer=EngineerOut(name=engineer.name, staff_no=engineer.staff_no)
            if engineer
            else None,
            customer_link=link,
        )

    @app.post(
        "/api/v1/dispatches",
        status_code=201,
        response_model=DispatchOut,
        responses={
            400: {"model": Problem, "description": "The body cannot be read"},
            401: {"model": Problem, "description": "Missing or wrong API token"},
            413: {"model": Problem, "description": "The body is over 1 MiB"},
            422: {"model": Problem, "description": "Invalid dispatch: one entry per bad field"},
        },
        dependencies=[Depends(require_token)],
    )
    async def post_dispatch(body: DispatchIn) -> DispatchOut | JSONResponse:
        """Create a dispatch; it is offered to a qualified engineer at once."""
        async with services.uow() as uow:
            try:
                dispatch = await create_dispatch(
                    uow, body.model_dump(exclude_none=True), source="api"
                )
            except FieldError as exc:
                return problem(
                    422,
                    "invalid dispatch",
                    code="invalid_dispatch",
                    fields=[{"field": f, "message": m} for f, m in exc.errors],
                )
            link = await customer_link(uow, dispatch)
            out = await dispatch_out(uow, dispatch, link)
            await uow.commit()
            return out

    @app.get(
        "/api/v1/dispatches/{dispatch_id}",
        response_model=DispatchOut,
        responses={
            401: {"model": Problem, "description": "Missing or wrong API token"},
            404: {"model": Problem, "description": "No such dispatch"},
            422: {"model": Problem, "description": "The id is not a positive integer"},
        },
        dependencies=[Depends(require_token)],
    )
    async def get_dispatch(
        dispatch_id: int = Path(ge=1, le=MAX_ID, description="The dispatch's id", examples=[1]),
    ) -> DispatchOut:
        """Read a dispatch's status."""
        async with services.uow() as uow:
            dispatch = await uow.session.get(Dispatch, dispatch_id)
            if dispatch is None:
                raise HTTPException(status_code=404, detail="no such dispatch")
            return await dispatch_out(uow, dispatch)

    @app.post("/telegram/webhook", include_in_schema=False)
    async def webhook(
        request: Request,
        secret: str | None = Header(default=None, alias="X-Telegram-Bot-Api-Secret-Token"),
    ) -> JSONResponse:
        expected = settings.webhook_secret
        if (
            not settings.webhook_url
            or not expected
            or not hmac.compare_digest((secret or "").encode(), expected.encode())
        ):
            return problem(403, "forbidden")
        try:
            update = await request.json()
            update_id = int(update["update_id"])
        except (ValueError, KeyError, TypeError):
            return problem(400, "not an update")
        update["update_id"] = update_id
        try:
            async with services.uow() as uow:
                await inbox.store(uow.session, [update], uow.clock.now())
                await uow.commit()  # stored before Telegram hears 200
        except Exception as exc:  # the database is down or restarting: Telegram retries
            log.warning(
                "webhook update %s not stored (%s); answered 503", update_id, type(exc).__name__
            )
            return problem(503, "database unavailable, retry later")
        if on_update is not None:  # told the update's chat: the inbox processor
            on_update([inbox.chat_of(update)])
        return JSONResponse({"ok": True})

    @app.get(
        "/health",
        response_model=Health,
        responses={503: {"model": Health, "description": "The database is unreachable"}},
    )
    async def health() -> JSONResponse:
        try:
            async with services.uow() as uow:
                await uow.session.execute(text("SELECT 1"))
        except Exception:
            return JSONResponse({"status": "degraded", "database": "unreachable"}, status_code=503)
        return JSONResponse({"status": "ok", "database": "ok"})

    return app
