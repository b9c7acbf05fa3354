"""The forwarding client's own duties, beside the framing matrix (tests/test_upstream_framing.py):
the request head it writes, keep-alive reuse and its expiry, and what it refuses to send.

A raw asyncio server plays the upstream, so each test sees the exact bytes and connections."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest

from router.upstream import client as client_module
from router.upstream.client import ConnectFailed, ResponseFailed, UpstreamClient

NO_HANG = 30  # seconds: only a bound for "it does not hang"
ANSWER = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"


@dataclass
class Upstream:
    """Answers every request head with ANSWER; keeps what it read and when connections close."""

    port: int = 0
    heads: list[bytes] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)
    connections: int = 0
    closed: asyncio.Event = field(default_factory=asyncio.Event)

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while head := await reader.readuntil(b"\r\n\r\n"):
                self.heads.append(head)
                length = next(
                    (
                        int(line.split(b":")[1])
                        for line in head.lower().split(b"\r\n")
                        if line.startswith(b"content-length:")
                    ),
                    0,
                )
                self.bodies.append(await reader.readexactly(length))
                writer.write(ANSWER)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()
            self.closed.set()


@pytest.fixture
async def upstream() -> AsyncIterator[Upstream]:
    up = Upstream()
    server = await asyncio.start_server(up.serve, "127.0.0.1", 0)
    up.port = server.sockets[0].getsockname()[1]
    yield up
    server.close()


@pytest.fixture
async def client() -> AsyncIterator[UpstreamClient]:
    forwarding = UpstreamClient()
    yield forwarding
    await forwarding.close()


async def read_all(client: UpstreamClient, url: str, body: bytes = b"", method: str = "POST") -> bytes:
    async with asyncio.timeout(NO_HANG):
        up = await client.send(method, url, [("Content-Type", "text/plain")], body, 5, NO_HANG)
        data = b""
        while chunk := await up.read_chunk():
            data += chunk
        up.release()
        return data


async def test_the_head_names_the_host_the_path_and_the_body_length(client, upstream):
    assert await read_all(client, f"http://127.0.0.1:{upstream.port}/v1/messages?beta=true", b"hello") == b"ok"
    lines = upstream.heads[0].decode().split("\r\n")
    assert lines[0] == "POST /v1/messages?beta=true HTTP/1.1"
    assert f"Host: 127.0.0.1:{upstream.port}" in lines
    assert "Content-Length: 5" in lines and "Content-Type: text/plain" in lines
    assert upstream.bodies == [b"hello"]
    for added in ("User-Agent", "Accept-Encoding", "Connection"):
        assert not any(line.startswith(added) for line in lines), f"the client added {added}: {lines}"


async def test_a_get_carries_no_body_length_and_a_bodiless_post_says_zero(client, upstream):
    base = f"http://127.0.0.1:{upstream.port}"
    await read_all(client, base + "/slots", method="GET")
    await read_all(client, base + "/v1/messages", method="POST")
    assert b"content-length" not in upstream.heads[0].lower()
    assert b"Content-Length: 0" in upstream.heads[1]


async def test_credentials_in_the_url_become_basic_auth_and_never_the_host(client, upstream):
    await read_all(client, f"http://user:p%40ss@127.0.0.1:{upstream.port}/v1/messages", b"x")
    head = upstream.heads[0].decode()
    assert "Authorization: Basic dXNlcjpwQHNz" in head  # user:p@ss
    assert f"Host: 127.0.0.1:{upstream.port}\r\n" in head and "user" not in head.split("Authorization")[0]


async def test_a_finished_answer_leaves_its_connection_for_the_next_request(client, upstream):
    url = f"http://127.0.0.1:{upstream.port}/v1/messages"
    for _ in range(3):
        await read_all(client, url, b"x")
    assert upstream.connections == 1


async def test_an_answer_dropped_half_read_never_serves_again(client, upstream):
    url = f"http://127.0.0.1:{upstream.port}/v1/messages"
    async with asyncio.timeout(NO_HANG):
        up = await client.send("POST", url, [], b"x", 5, NO_HANG)
    up.close()  # the client left before the body was read
    await read_all(client, url, b"x")
    assert upstream.connections == 2


async def test_idle_connections_are_closed_after_the_keepalive_time(client, upstream, monkeypatch):
    monkeypatch.setattr(client_module, "KEEPALIVE", 0.05)
    await read_all(client, f"http://127.0.0.1:{upstream.port}/v1/messages", b"x")
    async with asyncio.timeout(NO_HANG):
        await upstream.closed.wait()  # the sweep closed it: the server saw the connection end


async def test_a_control_character_in_a_header_is_refused_before_anything_is_sent(client, upstream):
    with pytest.raises(ResponseFailed, match="not sent the request"):
        await client.send(
            "POST", f"http://127.0.0.1:{upstream.port}/v", [("X-Evil", "a\r\nInjected: 1")], b"x", 5, NO_HANG
        )
    assert upstream.heads == []


async def test_an_unreachable_or_unknown_server_is_connect_failed(client, closed_port):
    with pytest.raises(ConnectFailed, match="refused"):
        await client.send("GET", f"http://127.0.0.1:{closed_port}/slots", [], b"", 5, NO_HANG)
    with pytest.raises(ConnectFailed, match="not an http"):
        await client.send("GET", "ftp://127.0.0.1/slots", [], b"", 5, NO_HANG)
