"""The forwarding client (router/upstream/http1.py) against a real aiohttp server: keep-alive
reuse, Connection: close, a kept connection the server closed meanwhile, HEAD, chunked bodies,
a slow reader, and the failures the proxy maps to client errors."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiohttp import web

from router.upstream.http1 import ConnectFailed, Http1Client, ResponseFailed


async def read_all(response: Any) -> bytes:
    chunks = []
    while chunk := await response.read_chunk():
        chunks.append(chunk)
    return b"".join(chunks)


@pytest.fixture
async def server(aiohttp_server: Any) -> Any:
    peers: list[Any] = []

    async def echo(request: web.Request) -> web.StreamResponse:
        peers.append(request.transport.get_extra_info("peername") if request.transport else None)
        body = await request.read()
        if request.query.get("chunked"):
            response = web.StreamResponse()
            await response.prepare(request)
            for piece in (b"one ", b"two ", b"three"):
                await response.write(piece)
            await response.write_eof()
            return response
        if request.query.get("big"):
            return web.Response(body=b"x" * int(request.query["big"]))
        headers = {"Connection": "close"} if request.query.get("close") else {}
        return web.Response(body=b"got " + body + f" host={request.host} path={request.path_qs}".encode(), headers=headers)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", echo)
    running = await aiohttp_server(app)
    running.peers = peers
    running.base = str(running.make_url("")).rstrip("/")
    return running


async def test_connections_are_kept_alive_and_reused_unless_the_server_says_close(server):
    client = Http1Client()
    try:
        for query in ("", "", "?close=1", ""):
            response = await client.request("POST", server.base, f"/v1/x{query}", [("Content-Type", "text/plain")], b"hello", 5, 5)
            assert response.status == 200 and (await read_all(response)).startswith(b"got hello host=127.0.0.1:")
            response.release()
        assert server.peers[0] == server.peers[1] == server.peers[2], "one connection until the server closed it"
        assert server.peers[3] != server.peers[2], "a new connection after Connection: close"
    finally:
        client.close()


async def test_a_path_prefix_in_the_base_url_is_kept(server):
    client = Http1Client()
    response = await client.request("GET", server.base + "/prefix/", "/v1/models?x=1", [], b"", 5, 5)
    assert b"path=/prefix/v1/models?x=1" in await read_all(response)
    client.close()


async def test_a_kept_connection_the_server_closed_meanwhile_is_replaced_transparently(aiohttp_server):
    async def answer(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/", answer)
    running = await aiohttp_server(app, keepalive_timeout=0.05)  # the server drops idle connections quickly
    base = str(running.make_url("")).rstrip("/")
    client = Http1Client()
    for _ in range(2):
        response = await client.request("GET", base, "/", [], b"", 5, 5)
        assert await read_all(response) == b"ok"
        response.release()
        await asyncio.sleep(0.2)
    client.close()


async def test_head_chunked_and_large_bodies(server):
    client = Http1Client()
    head = await client.request("HEAD", server.base, "/", [], b"", 5, 5)
    assert head.status == 200 and await read_all(head) == b""
    head.release()
    chunked = await client.request("GET", server.base, "/?chunked=1", [], b"", 5, 5)
    assert await read_all(chunked) == b"one two three"
    chunked.release()
    big = await client.request("GET", server.base, "/?big=3000000", [], b"", 5, 5)
    received = 0
    while chunk := await big.read_chunk():
        received += len(chunk)
        await asyncio.sleep(0)  # a slow reader: the client pauses reading instead of buffering it all
    assert received == 3_000_000
    big.release()
    client.close()


async def test_refused_garbage_and_silence_raise_what_the_proxy_maps(unused_tcp_port, closed_port):
    client = Http1Client()
    with pytest.raises(ConnectFailed):
        await client.request("GET", f"http://127.0.0.1:{closed_port}", "/", [], b"", 5, 5)

    handlers_done: list[asyncio.Event] = []

    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(100)
        writer.write(b"\x00 not http\r\n\r\n")
        await writer.drain()
        await close(writer)

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(100)
        await reader.read(100)  # nothing to say: wait until the client hangs up
        await close(writer)

    async def close(writer: asyncio.StreamWriter) -> None:
        writer.close()
        await writer.wait_closed()
        handlers_done[-1].set()

    handlers_done.append(asyncio.Event())
    bad = await asyncio.start_server(garbage, "127.0.0.1", unused_tcp_port)
    with pytest.raises(ResponseFailed, match="not an HTTP response"):
        await client.request("GET", f"http://127.0.0.1:{unused_tcp_port}", "/", [], b"", 5, 5)
    await handlers_done[-1].wait()
    bad.close()
    await bad.wait_closed()
    handlers_done.append(asyncio.Event())
    quiet = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = quiet.sockets[0].getsockname()[1]
    with pytest.raises(asyncio.TimeoutError):
        await client.request("GET", f"http://127.0.0.1:{port}", "/", [], b"", 5, 0.2)
    await handlers_done[-1].wait()  # the client hung up on timeout, so the server side ends
    quiet.close()
    await quiet.wait_closed()
    client.close()


async def test_an_https_upstream_is_verified_and_spoken_to(aiohttp_server, tmp_path, monkeypatch):
    import shutil
    import ssl
    import subprocess

    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command to make a test certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)

    async def answer(request: web.Request) -> web.Response:
        return web.Response(text=f"secure {request.secure}")

    app = web.Application()
    app.router.add_get("/", answer)
    running = await aiohttp_server(app, ssl=context)
    base = f"https://127.0.0.1:{running.port}"
    with pytest.raises(ConnectFailed, match="CERTIFICATE_VERIFY_FAILED"):  # not trusted yet: nothing is sent
        await Http1Client().request("GET", base, "/", [], b"", 5, 5)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # what a user does for a private CA
    client = Http1Client()
    response = await client.request("GET", base, "/", [], b"", 5, 5)
    assert response.status == 200 and await read_all(response) == b"secure True"
    response.release()
    client.close()
