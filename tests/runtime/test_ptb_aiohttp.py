"""PTB's requests on aiohttp: what reaches the server, and how failures reach PTB."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from telegram import InputFile
from telegram.error import NetworkError, TimedOut
from telegram.request import RequestData
from telegram.request._requestparameter import RequestParameter

from bot.runtime.ptb_aiohttp import AiohttpRequest

seen: list[dict[str, object]] = []


async def _echo(request: web.Request) -> web.Response:
    if request.content_type.startswith("multipart/"):
        form = await request.post()
        upload = form["document"]
        seen.append(
            {
                "chat_id": form["chat_id"],
                "file": (upload.filename, upload.file.read()),  # type: ignore[union-attr]
            }
        )
    else:
        seen.append(dict(await request.post()))
    return web.json_response({"ok": True, "result": True})


async def _slow(request: web.Request) -> web.Response:
    await asyncio.sleep(1)
    return web.json_response({"ok": True, "result": True})


@pytest.fixture
async def server() -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_post("/echo", _echo)
    app.router.add_post("/slow", _slow)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    seen.clear()
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


def _data(**values: object) -> RequestData:
    return RequestData([RequestParameter.from_input(k, v) for k, v in values.items()])


async def test_parameters_arrive_as_ptb_encodes_them(server: str) -> None:
    request = AiohttpRequest()
    await request.initialize()
    try:
        status, body = await request.do_request(
            f"{server}/echo", "POST", _data(chat_id=7, text="你好", reply_markup={"a": [1]})
        )
    finally:
        await request.shutdown()
    assert status == 200
    assert body == b'{"ok": true, "result": true}'
    assert seen == [{"chat_id": "7", "text": "你好", "reply_markup": '{"a": [1]}'}]


async def test_a_file_is_uploaded_as_multipart(server: str) -> None:
    request = AiohttpRequest()
    await request.initialize()
    try:
        document = InputFile(b"%PDF-1.4 work order", filename="FB000001.pdf")
        status, _ = await request.do_request(
            f"{server}/echo", "POST", _data(chat_id=7, document=document)
        )
    finally:
        await request.shutdown()
    assert status == 200
    assert seen == [{"chat_id": "7", "file": ("FB000001.pdf", b"%PDF-1.4 work order")}]


async def test_no_answer_in_time_is_ptbs_timed_out(server: str) -> None:
    request = AiohttpRequest()
    await request.initialize()
    try:
        with pytest.raises(TimedOut):
            await request.do_request(f"{server}/slow", "POST", _data(chat_id=1), read_timeout=0.2)
    finally:
        await request.shutdown()


async def test_nobody_listening_is_ptbs_network_error() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    request = AiohttpRequest()
    await request.initialize()
    try:
        with pytest.raises(NetworkError) as caught:
            await request.do_request(f"http://127.0.0.1:{port}/x", "POST", _data(chat_id=1))
    finally:
        await request.shutdown()
    assert not isinstance(caught.value, TimedOut)


async def test_a_request_before_initialize_is_refused() -> None:
    with pytest.raises(RuntimeError, match="not initialized"):
        await AiohttpRequest().do_request("http://127.0.0.1:9/x", "POST")
