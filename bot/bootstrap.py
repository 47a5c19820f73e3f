"""One bootstrap(settings) builds everything: services, runtime, workers, scheduler, HTTP app."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.api.app import build_app
from bot.config import Settings
from bot.core.clock import Clock, SystemClock
from bot.core.events import Event
from bot.db import migrate
from bot.db.engine import make_engine, make_sessionmaker
from bot.flows import delivery
from bot.handlers.router import handle
from bot.i18n import Renderer
from bot.runtime.base import Runtime
from bot.scheduler.sweep import build_scheduler
from bot.services import inbox, outbox
from bot.services.context import Services
from bot.services.staff import organisation
from bot.services.workorder_pdf import warm_up_soon
from bot.workers.polling import Poller
from bot.workers.processor import InboxProcessor
from bot.workers.sender import OutboxSender

log = logging.getLogger(__name__)


class SchemaBehind(Exception):
    pass


def build_services(
    settings: Settings, *, clock: Clock | None = None, engine: AsyncEngine | None = None
) -> Services:
    engine = engine or make_engine(settings.database_url)
    return Services(
        settings=settings,
        clock=clock or SystemClock(),
        renderer=Renderer(),
        sessionmaker=make_sessionmaker(engine),
    )


def make_runtime(settings: Settings, services: Services) -> Runtime:
    async def on_event(event: Event) -> None:
        await handle(services, event)

    if settings.bot_runtime == "ptb":
        from bot.runtime.ptb import PTBRuntime

        return PTBRuntime(
            token=settings.bot_token, api_url=settings.telegram_api_url, handle=on_event
        )
    from bot.runtime.aiogram import AiogramRuntime

    return AiogramRuntime(
        token=settings.bot_token, api_url=settings.telegram_api_url, handle=on_event
    )


async def prepare_database(engine: AsyncEngine) -> None:
    """Upgrade an empty database; refuse to start on one an older fieldbot left behind."""
    current = await migrate.current_revision(engine)
    if current is None:
        await migrate.upgrade(engine)
        return
    if current != migrate.head_revision():
        raise SchemaBehind(f"the database schema is at {current}; run `fieldbot db upgrade` first")


# Young-generation collections every 10,000 net allocations instead of 700: an update
# allocates thousands of short-lived objects (rows, statements, template contexts), and at
# 700 most of them were traced once or twice before dying anyway.
GC_THRESHOLD = (10_000, 10, 10)


def freeze_startup_heap() -> None:
    """Once per process, after start-up: what start-up built (modules, pydantic schemas,
    templates) lives as long as the process, so take it out of the garbage collector's view;
    full collections then walk only what the work creates (measured: 1.3 → 0.07 ms of
    collection per update, docs/PERFORMANCE.md). Young collections run less often too."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLD)


def settle_process() -> None:
    """After start, in a long-running process: build the work-order font in the background
    (the first sign-off would otherwise wait for it) and freeze the start-up heap."""
    warm_up_soon()
    freeze_startup_heap()


@dataclass
class FieldBot:
    """The running product: polling or webhook, inbox processor, sender, scheduler, HTTP."""

    settings: Settings
    clock: Clock | None = None
    serve_http: bool = True
    receive_updates: bool = True  # False when mounted into a team's own aiogram/PTB bot
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.services = build_services(self.settings, clock=self.clock)
        self.runtime = make_runtime(self.settings, self.services)
        self.processor = InboxProcessor(self.services, self.runtime)
        self.sender = OutboxSender(
            self.services, self.runtime, on_permanent_failure=delivery.unreachable
        )
        # A commit may have queued messages: the sender looks. New updates wake the processor
        # where they arrive (poller, webhook); a handler's commit does not (its own task's end
        # does, and a claim round per commit found nothing new most of the time).
        self.services.after_commit.append(self.sender.wake.set)
        self.poller = Poller(self.services, self.runtime, on_stored=self.processor.stored)
        self.sweep_lock = asyncio.Lock()
        self.scheduler = build_scheduler(self.services, lock=self.sweep_lock)
        self.http_server: uvicorn.Server | None = None

    async def on_event(self, event: Event) -> None:
        """Handle one of our events (what a mounted aiogram router / PTB handler calls)."""
        await handle(self.services, event)

    @property
    def http_url(self) -> str:
        """Where the HTTP app listens (the real port when HTTP_PORT is 0)."""
        assert self.http_server is not None and self.http_server.servers
        host, port = self.http_server.servers[0].sockets[0].getsockname()[:2]
        return f"http://{host}:{port}"

    @property
    def engine(self) -> AsyncEngine:
        bind = self.services.sessionmaker.kw["bind"]
        assert isinstance(bind, AsyncEngine)
        return bind

    async def start(self) -> None:
        await prepare_database(self.engine)
        try:
            await self.runtime.start()
            me = await self.runtime.get_me()
        except Exception as exc:
            raise RuntimeError(
                f"cannot reach the Bot API at {self.settings.telegram_api_url}: "
                f"{type(exc).__name__}"
            ) from None
        async with self.services.uow() as uow:
            org = await organisation(uow)
            org.settings = {**org.settings, "bot_username": me.get("username", "")}
            await uow.commit()
        if not self.receive_updates:
            pass  # the host bot's Dispatcher/Application feeds our handlers (see README)
        elif self.settings.webhook_url:
            await self.runtime.set_webhook(
                self.settings.webhook_url + "/telegram/webhook", self.settings.webhook_secret
            )
        else:
            await self.runtime.delete_webhook()
            # Polling means one process (Telegram answers a second getUpdates with 409): the
            # leases still held in the inbox and outbox were a dead predecessor's. Release
            # them now instead of letting its chats wait out the 60-second lease.
            await self._release_dead_leases()
            self.tasks.append(asyncio.create_task(self.poller.run_forever()))
        self.tasks.append(asyncio.create_task(self.processor.run_forever()))
        self.tasks.append(asyncio.create_task(self.sender.run_forever()))
        self.scheduler.start()
        if self.serve_http:
            app = build_app(self.services, on_update=self.processor.stored)
            config = uvicorn.Config(
                app,
                host=self.settings.http_host,
                port=self.settings.http_port,
                log_level="warning",
                lifespan="off",
            )
            self.http_server = uvicorn.Server(config)
            self.tasks.append(asyncio.create_task(self.http_server.serve()))
            while not self.http_server.started:
                await asyncio.sleep(0.01)
                for task in self.tasks:
                    if task.done() and task.exception():
                        raise task.exception()  # type: ignore[misc]

    async def _release_dead_leases(self) -> None:
        async with self.services.uow() as uow:
            released = (
                await inbox.release_leases(uow.session),
                await outbox.release_leases(uow.session),
            )
            await uow.commit()
        if any(released):
            log.warning(
                "released the leases of %s update(s) and %s message(s) left by a stopped process "
                "(a message whose send was under way may reach Telegram twice)",
                *released,
            )

    async def stop(self, grace: float = 10.0) -> None:
        """Stop taking work, let every round in flight finish its transaction, then close."""
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)
        for worker in (self.poller, self.processor, self.sender):
            worker.stop()
        if self.http_server is not None:
            self.http_server.should_exit = True
        if self.tasks:
            _, late = await asyncio.wait(self.tasks, timeout=grace)
            for task in late:
                task.cancel()
            for task in self.tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        async with self.sweep_lock:  # a sweep still running finishes first
            pass
        self.tasks.clear()
        await self.runtime.stop()
        await self.engine.dispose()

    async def run_forever(self) -> None:
        """The process's main coroutine (``fieldbot run``): start, serve until cancelled."""
        await self.start()
        settle_process()
        try:
            await asyncio.Event().wait()
        finally:
            await self.stop()
