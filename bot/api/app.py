"""The HTTP app: Telegram webhook, the back office's REST API, health."""

from __future__ import annotations

import hmac
from collections.abc import Callable
from datetime import datetime
from typing import Any

from fastapi import Depends, FastAPI, Header, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel
from sqlalchemy import text

from bot.db.models import Dispatch, User
from bot.flows.intake import create_dispatch
from bot.services import inbox
from bot.services.context import Services
from bot.services.customers import customer_link
from bot.services.errors import FieldError
from bot.services.intake import DispatchIn

bearer = HTTPBearer(auto_error=False)


class FieldProblem(BaseModel):
    field: str
    message: str


class Problem(BaseModel):
    error: str
    fields: list[FieldProblem] = []


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


def build_app(services: Services, *, on_update: Callable[[], None] | None = None) -> FastAPI:
    """Build the app for ``services`` (no engine or bot is created at import time)."""
    app = FastAPI(title="fieldbot", version="1", docs_url="/docs", openapi_url="/openapi.json")
    settings = services.settings

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        fields = []
        for err in exc.errors():
            loc = [str(p) for p in err.get("loc", ()) if p not in ("body",)]
            fields.append(
                {
                    "field": ".".join(loc) or "body",
                    "message": str(err.get("msg", "invalid")).removeprefix("Value error, "),
                }
            )
        return JSONResponse({"error": "invalid request", "fields": fields}, status_code=422)

    def require_token(
        credentials: HTTPAuthorizationCredentials | None = Depends(bearer),
    ) -> None:
        expected = settings.api_token
        given = credentials.credentials if credentials else ""
        if not expected or not hmac.compare_digest(given.encode(), expected.encode()):
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
        responses={401: {"model": Problem}, 422: {"model": Problem}},
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
                return JSONResponse(
                    {
                        "error": "invalid dispatch",
                        "fields": [{"field": f, "message": m} for f, m in exc.errors],
                    },
                    status_code=422,
                )
            link = await customer_link(uow, dispatch)
            out = await dispatch_out(uow, dispatch, link)
            await uow.commit()
            return out

    @app.get(
        "/api/v1/dispatches/{dispatch_id}",
        response_model=DispatchOut,
        responses={401: {"model": Problem}, 404: {"model": Problem}},
        dependencies=[Depends(require_token)],
    )
    async def get_dispatch(dispatch_id: int) -> DispatchOut:
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
            return JSONResponse({"error": "forbidden"}, status_code=403)
        try:
            update = await request.json()
            update_id = int(update["update_id"])
        except (ValueError, KeyError, TypeError):
            return JSONResponse({"error": "not an update"}, status_code=400)
        update["update_id"] = update_id
        async with services.uow() as uow:
            await inbox.store(uow.session, [update], uow.clock.now())
            await uow.commit()  # stored before Telegram hears 200
        if on_update is not None:
            on_update()
        return JSONResponse({"ok": True})

    @app.get("/health")
    async def health() -> JSONResponse:
        try:
            async with services.uow() as uow:
                await uow.session.execute(text("SELECT 1"))
        except Exception:
            return JSONResponse({"status": "degraded", "database": "unreachable"}, status_code=503)
        return JSONResponse({"status": "ok", "database": "ok"})

    return app
