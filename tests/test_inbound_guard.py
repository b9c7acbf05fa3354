"""router/inbound.py on real loopback sockets in front of a real aiohttp application, on asyncio and on uvloop:
silent and trickling connections, the connection cap, keep-alive, Expect: 100-continue, and the connection count."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from router.inbound import ConnectionGuard, InboundLimits, start_site

BOUND = 15.0  # a generous bound on every wait: the tests assert what happens, never how fast
HEAD = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: guard-test\r\n\r\n"
Run = Callable[[Coroutine[Any, Any, None]], None]


@pytest.fixture(params=["asyncio", "uvloop"])
def run(request: pytest.FixtureRequest) -> Run:
    """Run a test's coroutine on a new loop of each kind the router may run on."""
    if request.param == "uvloop":
        return pytest.importorskip("uvloop").run  # type: ignore[no-any-return]
    return asyncio.run


class Site:
    """The application served through the guard, and what its handlers saw."""

    def __init__(self, busy_expected: int = 0) -> None:
        self.release = asyncio.Event()
        self.busy: list[web.Request] = []
        self.all_busy = asyncio.Event()
        self.busy_expected = busy_expected
        self.port = 0
        self.guard: ConnectionGuard | None = None

    def app(self) -> web.Application:
        async def hello(request: web.Request) -> web.Response:
            peer = request.transport.get_extra_info("peername") if request.transport else None
            return web.Response(text=f"hello {peer[1] if peer else '?'}")

        async def slow(request: web.Request) -> web.Response:
            self.busy.append(request)
            if len(self.busy) == self.busy_expected:
                self.all_busy.set()
            await self.release.wait()
            return web.Response(text="done")

        async def upload(request: web.Request) -> web.Response:
            return web.Response(text=str(len(await request.read())))

        app = web.Application(client_max_size=8 << 20)
        app.router.add_get("/", hello)
        app.router.add_get("/slow", slow)
        app.router.add_post("/upload", upload)
        return app

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@asynccontextmanager
async def serving(limits: InboundLimits, site: Site | None = None) -> AsyncIterator[Site]:
    """SITE served on a loopback port through start_site; on leaving, everything is closed and uncounted."""
    site = site or Site()
    runner = web.AppRunner(site.app(), keepalive_timeout=30.0, access_log=None)
    await runner.setup()
    assert runner.server is not None
    site.guard = ConnectionGuard(limits, runner.server)
    server = await start_site(runner, "127.0.0.1", 0, limits, guard=site.guard)
    site.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
    try:
        yield site
    finally:
        server.close()
        await runner.cleanup()
        await until(lambda: site.guard is not None and site.guard.open_connections == 0)


async def until(condition: Callable[[], bool]) -> None:
    """Wait, within BOUND, for CONDITION to hold (polled: the guard's count has no event to wait on)."""

    async def poll() -> None:
        while not condition():
            await asyncio.sleep(0.01)

    await asyncio.wait_for(poll(), BOUND)


async def bounded(awaitable: Awaitable[Any]) -> Any:
    """AWAITABLE's result, failing the test instead of hanging past BOUND."""
    return await asyncio.wait_for(awaitable, BOUND)


async def get(site: Site, path: str = "/") -> tuple[int, str]:
    """One request from a real aiohttp client on a new connection."""
    async with aiohttp.ClientSession() as session, session.get(site.url + path) as response:
        return response.status, await response.text()


async def read_response(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    """One Content-Length response: its head and its body."""
    head = await bounded(reader.readuntil(b"\r\n\r\n"))
    length = next(
        int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")
    )
    return head, await bounded(reader.readexactly(length))


def assert_closing_answer(answer: bytes, status: bytes, words: bytes) -> None:
    """ANSWER is a whole STATUS answer, Connection: close, a one-line body saying WORDS, then the end of the stream."""
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"HTTP/1.1 " + status, answer
    assert b"Connection: close" in lines and b"Content-Type: text/plain" in lines, answer
    assert f"Content-Length: {len(body)}".encode() in lines and body.count(b"\n") == 1 and words in body, answer


@pytest.mark.parametrize("limits", [InboundLimits(max_connections=100), InboundLimits()], ids=["cap-100", "defaults"])
def test_300_silent_connections_do_not_lock_out_a_real_client(run: Run, limits: InboundLimits) -> None:
    async def main() -> None:
        async with serving(limits) as site:
            silent = [await bounded(asyncio.open_connection("127.0.0.1", site.port)) for _ in range(300)]
            status, text = await bounded(get(site))
            assert status == 200 and text.startswith("hello ")
            if limits.max_connections == 100:  # the oldest silent ones made room, and were told so
                assert_closing_answer(await bounded(silent[0][0].read()), b"408 Request Timeout", b"to make room")
                assert_closing_answer(await bounded(silent[199][0].read()), b"408 Request Timeout", b"to make room")
            else:  # all 300 still open: the client's connection is gone again
                await until(lambda: site.guard is not None and site.guard.open_connections == 300)
            for _, writer in silent:
                writer.close()

    run(main())


def test_a_trickled_request_head_gets_408_and_is_closed_while_a_normal_client_is_served(run: Run) -> None:
    async def main() -> None:
        async with serving(InboundLimits(header_timeout=0.5)) as site:
            reader, writer = await bounded(asyncio.open_connection("127.0.0.1", site.port))
            silent_reader, silent_writer = await bounded(asyncio.open_connection("127.0.0.1", site.port))

            async def trickle() -> None:  # a request line, then a header name that never ends, 10 bytes a second
                for byte in itertools.chain(b"GET / HTTP/1.1\r\nX-", itertools.repeat(ord("a"))):
                    writer.write(bytes([byte]))
                    await asyncio.sleep(0.1)  # the trickle's pace (faster than the deadline), not a synchronisation

            trickling = asyncio.create_task(trickle())
            status, text = await bounded(get(site))
            assert status == 200 and text.startswith("hello ")
            answer = await bounded(reader.read())  # read() returns at the end of the stream: the guard closed it
            trickling.cancel()
            assert_closing_answer(answer, b"408 Request Timeout", b"no whole request head within 0.5 s")
            # a connection that never sent a byte gets the same answer
            answer = await bounded(silent_reader.read())
            assert_closing_answer(answer, b"408 Request Timeout", b"no whole request head within 0.5 s")
            writer.close()
            silent_writer.close()

    run(main())


def test_a_head_in_small_pieces_completed_in_time_is_served(run: Run) -> None:
    async def main() -> None:
        async with serving(InboundLimits(header_timeout=10)) as site:
            for size in (1, 2, 3, 5):  # \r\n\r\n split across writes at different places, after an empty line
                reader, writer = await bounded(asyncio.open_connection("127.0.0.1", site.port))
                head = b"\r\n" + HEAD
                for start in range(0, len(head), size):
                    writer.write(head[start : start + size])
                    await writer.drain()
                    await asyncio.sleep(0.002)  # separate segments; served whether or not the kernel merges them
                head, body = await read_response(reader)
                assert head.startswith(b"HTTP/1.1 200 OK\r\n") and body.startswith(b"hello "), (head, body)
                writer.close()

    run(main())


def test_the_end_of_the_first_head_is_found_across_any_split() -> None:
    async def main() -> None:
        received: list[bytes] = []

        class Inner(asyncio.Protocol):
            def data_received(self, data: bytes) -> None:
                received.append(data)

        class Transport(asyncio.Transport):
            def is_closing(self) -> bool:
                return False

        head = b"\r\n\r\n" + HEAD  # empty lines first: they must not count as the end of a head
        for first in range(1, len(head)):
            for second in range(first, len(head)):
                guard = ConnectionGuard(InboundLimits(header_timeout=60), Inner)
                protocol = guard()
                protocol.connection_made(Transport())
                protocol.data_received(head[:first])
                protocol.data_received(head[first:second])
                assert guard._waiting, (first, second)  # the last byte of the head is still to come
                protocol.data_received(head[second:])
                assert not guard._waiting, (first, second)
                assert b"".join(received[-3:]) == head
                protocol.connection_lost(None)
                assert guard.open_connections == 0
        for cut in range(len(head) - 1):  # one byte short: still waiting
            guard = ConnectionGuard(InboundLimits(header_timeout=60), Inner)
            protocol = guard()
            protocol.connection_made(Transport())
            protocol.data_received(head[:cut])
            protocol.data_received(head[cut:-1])
            assert guard._waiting, cut
            protocol.connection_lost(None)

    asyncio.run(main())


def test_keep_alive_requests_after_the_first_are_left_to_aiohttp(run: Run) -> None:
    async def main() -> None:
        async with serving(InboundLimits(header_timeout=0.5)) as site:
            reader, writer = await bounded(asyncio.open_connection("127.0.0.1", site.port))
            writer.write(HEAD)
            first = await read_response(reader)
            await asyncio.sleep(1.0)  # idle past header_timeout: the guard's deadline was for the first head only
            writer.write(HEAD)
            second = await read_response(reader)
            for head, body in (first, second):
                assert head.startswith(b"HTTP/1.1 200 OK\r\n") and body.startswith(b"hello "), (head, body)
            assert first[1] == second[1], "one connection (the handler answers with the client's port)"
            writer.close()

    run(main())


def test_at_the_cap_with_every_connection_busy_a_new_one_gets_503(run: Run) -> None:
    async def main() -> None:
        async with serving(InboundLimits(max_connections=3), Site(busy_expected=3)) as site:
            async with aiohttp.ClientSession() as session:

                async def slow() -> tuple[int, str]:
                    async with session.get(site.url + "/slow") as response:
                        return response.status, await response.text()

                busy = [asyncio.create_task(slow()) for _ in range(3)]
                await bounded(site.all_busy.wait())
                reader, writer = await bounded(asyncio.open_connection("127.0.0.1", site.port))
                writer.write(HEAD)
                assert_closing_answer(
                    await bounded(reader.read()), b"503 Service Unavailable", b"at its limit of 3 connections, all busy"
                )
                writer.close()
                assert not any(task.done() for task in busy)
                site.release.set()
                assert await bounded(asyncio.gather(*busy)) == [(200, "done")] * 3
            await until(lambda: site.guard is not None and site.guard.open_connections == 0)
            status, _ = await bounded(get(site))
            assert status == 200

    run(main())


def test_closed_connections_are_uncounted_whoever_closed_them(run: Run) -> None:
    async def main() -> None:
        async with serving(InboundLimits(max_connections=4)) as site:  # evicted by the guard, the rest by the client
            assert site.guard is not None
            guard = site.guard
            silent = [await bounded(asyncio.open_connection("127.0.0.1", site.port)) for _ in range(6)]
            for reader, _ in silent[:2]:  # the client does not close them: the guard answers, lingers, closes
                assert_closing_answer(await bounded(reader.read()), b"408 Request Timeout", b"to make room")
            await until(lambda: guard.open_connections == 4)
            for _, writer in silent:
                writer.close()
            await until(lambda: guard.open_connections == 0)
        async with serving(InboundLimits(header_timeout=0.5)) as site:  # timed out, and served
            assert site.guard is not None
            guard = site.guard
            silent = [await bounded(asyncio.open_connection("127.0.0.1", site.port)) for _ in range(4)]
            status, _ = await bounded(get(site))
            assert status == 200
            await until(lambda: guard.open_connections == 0)  # the client did not close the silent ones
            for reader, writer in silent:
                assert_closing_answer(await bounded(reader.read()), b"408 Request Timeout", b"within 0.5 s")
                writer.close()

    run(main())


def test_expect_100_continue_through_the_guard(run: Run) -> None:
    async def main() -> None:
        async with serving(InboundLimits(header_timeout=5)) as site:
            reader, writer = await bounded(asyncio.open_connection("127.0.0.1", site.port))
            body = bytes(range(256)) * (2 * 4096)  # 2 MiB
            writer.write(
                b"POST /upload HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/octet-stream\r\n"
                b"Content-Length: %d\r\nExpect: 100-continue\r\n\r\n" % len(body)
            )
            assert await bounded(reader.readuntil(b"\r\n\r\n")) == b"HTTP/1.1 100 Continue\r\n\r\n"
            writer.write(body)
            head, answer = await read_response(reader)
            assert head.startswith(b"HTTP/1.1 200 OK\r\n") and answer == str(len(body)).encode()
            writer.close()

    run(main())


def test_limits_and_start_site_refuse_what_cannot_work(run: Run) -> None:
    for bad in ({"header_timeout": 0}, {"max_connections": 0}):
        with pytest.raises(ValueError):
            InboundLimits(**bad)

    async def main() -> None:
        runner = web.AppRunner(Site().app())
        with pytest.raises(RuntimeError, match="setup"):
            await start_site(runner, "127.0.0.1", 0, InboundLimits())
        await runner.setup()
        assert runner.server is not None
        with pytest.raises(ValueError):
            await start_site(
                runner, "127.0.0.1", 0, InboundLimits(), guard=ConnectionGuard(InboundLimits(1), runner.server)
            )
        await runner.cleanup()

    run(main())
