"""Conformance matrix for the forwarding path's HTTP/1.1 framing, after the cases of h11's
test_connection.py: interim 1xx responses, read-until-close bodies, extra bytes behind a response,
a huge header block, 408 and silent closes on reused connections, raw UTF-8 header bytes,
trailers, HEAD, 204/304, a stream cut short, and upstream errors passing through.

Black-box on real sockets, so it holds whichever HTTP client the router forwards with: the router
runs as `python3 -m router serve` (one subprocess for the module) in front of a scripted raw-TCP
upstream. Every request carries a unique marker ("req-N": the user message's text, or a `marker`
query parameter when there is no body) and every scripted answer echoes it (in its body and in
an `X-Answer` header), so each test checks that a client got ITS OWN answer. After every case a
plain request must still get its own correct answer (no leftover bytes, no broken pool).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import socket
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import anthropic
import pytest
import pytest_asyncio

pytestmark = pytest.mark.asyncio(loop_scope="module")
NO_HANG = 60  # seconds: only a bound for "it does not hang", never a timing margin a pass depends on
# seconds between the parts of a Reply with `later`, so they reach the router as separate reads, as from a
# real server that sends an interim response before it has the answer (a correct router passes with any value)
SPACING = 0.2
ROOT = Path(__file__).resolve().parent.parent
_markers = itertools.count(1)


def new_marker() -> str:
    return f"req-{next(_markers)}"


# --- the scripted upstream --------------------------------------------------------------------


@dataclass
class Seen:
    """One request as the upstream received it."""

    method: str
    target: str
    headers: dict[str, str]  # names lower-cased
    body: bytes
    marker: str  # the req-N found in the target or the body ("" if none)
    connection: int  # which TCP connection: 1, 2, ... in order of arrival
    nth: int  # 1 for a connection's first request, 2+ on a reused connection

    @property
    def stream(self) -> bool:
        return re.search(rb'"stream":\s*true', self.body) is not None


@dataclass
class Reply:
    data: bytes  # written at once: several responses, part of one, or nothing
    close: bool = False  # close the connection afterwards
    later: bytes = b""  # written SPACING after DATA went out (an interim response's real answer)


Script = Callable[[Seen], Reply]


class ScriptedUpstream:
    """For each request: read the head and the body (Content-Length or chunked), record it, write
    what the current script returns for it."""

    def __init__(self) -> None:
        self.script: Script = normal
        self.seen: list[Seen] = []
        self._connections = itertools.count(1)

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connection = next(self._connections)
        try:
            for nth in itertools.count(1):
                request_line, *lines = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")[:-4].split("\r\n")
                method, target, _ = request_line.split(" ", 2)
                headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines)}
                if headers.get("transfer-encoding", "").lower() == "chunked":
                    body = b""
                    while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
                        body += (await reader.readexactly(size + 2))[:-2]
                    while await reader.readuntil(b"\r\n") != b"\r\n":
                        pass  # request trailers
                else:
                    body = await reader.readexactly(int(headers.get("content-length", 0)))
                found = re.search(r"req-\d+", target + body.decode("utf-8", "replace"))
                seen = Seen(method, target, headers, body, found.group() if found else "", connection, nth)
                self.seen.append(seen)
                reply = self.script(seen)
                writer.write(reply.data)
                await writer.drain()
                if reply.later:
                    await asyncio.sleep(SPACING)
                    writer.write(reply.later)
                    await writer.drain()
                if reply.close:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the router closed the connection
        finally:
            writer.close()


def response(
    status: bytes,
    body: bytes = b"",
    headers: tuple[bytes, ...] = (),
    *,
    version: bytes = b"HTTP/1.1",
    length: bool = True,
) -> bytes:
    """A raw response; LENGTH: add a Content-Length for BODY."""
    lines = [version + b" " + status, *headers, *([b"Content-Length: %d" % len(body)] if length else [])]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def json_answer(marker: str) -> bytes:
    return json.dumps(
        {
            "id": f"msg_{marker}",
            "type": "message",
            "role": "assistant",
            "model": "m",
            "content": [{"type": "text", "text": f"answer {marker}"}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": {"input_tokens": 1, "output_tokens": 2},
        }
    ).encode()


def sse_answer(marker: str) -> bytes:
    events = [
        {
            "type": "message_start",
            "message": {
                "id": f"msg_{marker}",
                "type": "message",
                "role": "assistant",
                "model": "m",
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": {"input_tokens": 1, "output_tokens": 0},
            },
        },
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": f"answer {marker}"}},
        {"type": "content_block_stop", "index": 0},
        {
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn", "stop_sequence": None},
            "usage": {"output_tokens": 2},
        },
        {"type": "message_stop"},
    ]
    return b"".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n".encode() for e in events)


def answer_of(req: Seen) -> tuple[tuple[bytes, ...], bytes]:
    """(headers, body) of REQ's right answer: SSE or JSON, echoing its marker."""
    if req.stream:
        return (b"Content-Type: text/event-stream", b"X-Answer: " + req.marker.encode()), sse_answer(req.marker)
    return (b"Content-Type: application/json", b"X-Answer: " + req.marker.encode()), json_answer(req.marker)


def normal(req: Seen) -> Reply:
    """The right answer, keep-alive, with a Content-Length."""
    headers, body = answer_of(req)
    return Reply(response(b"200 OK", body, headers))


# --- the router under test, and its clients ---------------------------------------------------


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def scripted() -> Any:
    upstream = ScriptedUpstream()
    await upstream.start()
    yield upstream
    upstream.server.close()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def router(scripted: ScriptedUpstream, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """`python3 -m router serve` whose only rule forwards everything (HEAD too) to the scripted
    upstream; yields (url, path of its stderr)."""
    work = tmp_path_factory.mktemp("framing")
    rules = work / "rules.yaml"
    rules.write_text(
        f"version: 1\nplugin_rules: false\nupstreams:\n  local:\n    url: {scripted.url}\n    max_concurrency: 1\n    keepalive: 0\n"
        "rules:\n  - {name: all, match: {}, action: {forward: {upstream: local}}}\n"
    )
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    stderr = work / "router.stderr"
    with open(stderr, "wb") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "router",
                "serve",
                "--upstream",
                scripted.url,
                "--port",
                str(port),
                "--rules",
                str(rules),
            ],
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
        )
    try:
        async with asyncio.timeout(NO_HANG):
            while True:  # poll the port until the router listens
                assert process.poll() is None, f"the router exited ({process.returncode}):\n{stderr.read_text()}"
                try:
                    _, writer = await asyncio.open_connection("127.0.0.1", port)
                except OSError:
                    await asyncio.sleep(0.05)
                    continue
                writer.close()
                break
        yield f"http://127.0.0.1:{port}", stderr
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@dataclass
class Answer:
    status: int
    body: bytes
    response: aiohttp.ClientResponse  # its headers and raw_headers stay readable


class Harness:
    """A client session to the router, the scripted upstream, and what a failure message needs."""

    def __init__(self, session: aiohttp.ClientSession, scripted: ScriptedUpstream, stderr: Path) -> None:
        self.session, self.scripted, self.stderr = session, scripted, stderr

    def log(self) -> str:
        seen = [(s.method, s.marker, f"connection {s.connection} request {s.nth}") for s in self.scripted.seen]
        return f"\nupstream saw: {seen}\nrouter stderr (tail):\n{self.stderr.read_text(errors='replace')[-2500:]}"

    async def request(self, method: str, path: str, **kwargs: Any) -> Answer:
        try:
            async with self.session.request(method, path, **kwargs) as resp:
                return Answer(resp.status, await resp.read(), resp)
        except TimeoutError:
            pytest.fail(f"{method} {path}: no answer within {NO_HANG}s{self.log()}")
        except aiohttp.ClientError as exc:
            pytest.fail(f"{method} {path}: the client could not read the answer: {exc!r}{self.log()}")

    async def post(self, marker: str, stream: bool = False) -> Answer:
        return await self.request("POST", "/v1/messages", json=request_body(marker, stream))

    def assert_own_json_answer(self, answer: Answer, marker: str) -> None:
        assert answer.status == 200, f"{marker}: {answer.status} {answer.body[:300]!r}{self.log()}"
        assert answer.body == json_answer(marker), f"{marker} got {answer.body[-300:]!r}{self.log()}"
        assert answer.response.headers.getall("X-Answer", []) == [marker], (
            f"{marker}: headers {answer.response.headers!r}{self.log()}"
        )

    async def assert_still_serves(self) -> None:
        """After a fault: a plain request gets its own answer (not a leftover, not an error)."""
        self.scripted.script = normal
        marker = new_marker()
        self.assert_own_json_answer(await self.post(marker), marker)


@pytest_asyncio.fixture(loop_scope="module")
async def h(router: tuple[str, Path], scripted: ScriptedUpstream) -> Any:
    scripted.script, scripted.seen = normal, []
    async with aiohttp.ClientSession(router[0], timeout=aiohttp.ClientTimeout(total=NO_HANG)) as session:
        yield Harness(session, scripted, router[1])


@pytest_asyncio.fixture(loop_scope="module")
async def sdk(router: tuple[str, Path]) -> Any:
    client = anthropic.AsyncAnthropic(base_url=router[0], api_key="none", max_retries=0, timeout=NO_HANG)
    yield client
    await client.close()


def request_body(marker: str, stream: bool = False) -> dict[str, Any]:
    return {"model": "m", "max_tokens": 16, "stream": stream, "messages": [{"role": "user", "content": marker}]}


# --- the cases ----------------------------------------------------------------------------------

INTERIM = {
    "100": response(b"100 Continue", length=False),
    "103": response(b"103 Early Hints", headers=(b"Link: </style.css>; rel=preload; as=style",), length=False),
}


@pytest.mark.parametrize(
    "arrival", ["together", "apart"]
)  # apart: the answer follows SPACING later, as from a real server
@pytest.mark.parametrize("interim", ["100", "103"])
async def test_case01_02_interim_1xx_then_the_answer(h, sdk, interim, arrival):
    def script(req: Seen) -> Reply:
        final = normal(req).data
        return Reply(INTERIM[interim] + final) if arrival == "together" else Reply(INTERIM[interim], later=final)

    h.scripted.script = script
    marker = new_marker()
    answer = await h.post(marker)
    h.assert_own_json_answer(answer, marker)
    assert "Link" not in answer.response.headers, f"the 103's headers were merged into the 200's{h.log()}"
    marker = new_marker()
    message = await asyncio.wait_for(sdk.messages.create(**request_body(marker)), NO_HANG)
    assert message.content[0].text == f"answer {marker}", h.log()
    await h.assert_still_serves()


async def test_case03a_read_until_close_json(h):
    def script(req: Seen) -> Reply:  # HTTP/1.0, no Content-Length, not chunked: the body ends at the close
        headers, body = answer_of(req)
        return Reply(response(b"200 OK", body, headers, version=b"HTTP/1.0", length=False), close=True)

    h.scripted.script = script
    marker = new_marker()
    h.assert_own_json_answer(await h.post(marker), marker)
    await h.assert_still_serves()


async def test_case03b_read_until_close_sse(h, sdk):
    def script(req: Seen) -> Reply:  # HTTP/1.1 with Connection: close, no Content-Length, not chunked
        headers, body = answer_of(req)
        return Reply(response(b"200 OK", body, (*headers, b"Connection: close"), length=False), close=True)

    h.scripted.script = script
    marker = new_marker()
    answer = await h.post(marker, stream=True)
    assert answer.status == 200, f"{answer.status} {answer.body[:300]!r}{h.log()}"
    assert answer.body == sse_answer(marker), (
        f"the stream must end at message_stop; it ends {answer.body[-300:]!r}{h.log()}"
    )
    marker = new_marker()
    async with sdk.messages.stream(model="m", max_tokens=16, messages=[{"role": "user", "content": marker}]) as stream:
        assert await asyncio.wait_for(stream.get_final_text(), NO_HANG) == f"answer {marker}", h.log()
    await h.assert_still_serves()


async def test_case04_extra_bytes_behind_the_response(h):
    stale = response(b"200 OK", json_answer("stale"), (b"Content-Type: application/json", b"X-Answer: stale"))
    h.scripted.script = lambda req: Reply(normal(req).data + stale)  # a whole second response nobody asked for
    marker = new_marker()
    h.assert_own_json_answer(await h.post(marker), marker)
    await h.assert_still_serves()  # and it must not get "stale"


async def test_case05_huge_header_block_is_a_prompt_502(h):
    padding = tuple(b"X-Pad-%05d: %s" % (i, b"a" * 8178) for i in range(2560))  # 2,560 lines of 8 KiB: 20 MiB
    h.scripted.script = lambda req: Reply(response(b"200 OK", json_answer(req.marker), padding), close=True)
    answer = await asyncio.wait_for(h.post(new_marker()), NO_HANG)
    assert answer.status == 502, (
        f"{answer.status} {answer.body[:300]!r}, {len(answer.response.raw_headers)} headers{h.log()}"
    )
    error = json.loads(answer.body)
    assert error["type"] == "error" and isinstance(error["error"]["type"], str), answer.body[:500]
    assert "'local'" in error["error"]["message"] or h.scripted.url in error["error"]["message"], answer.body[:500]
    await h.assert_still_serves()


@pytest.mark.parametrize("fault", ["408", "silent-close"])
async def test_case06_fault_on_a_reused_connection_is_retried(h, fault):
    first, second = new_marker(), new_marker()
    faulted: list[Seen] = []

    def script(req: Seen) -> Reply:
        if (
            req.marker == second and req.nth > 1 and not faulted
        ):  # the server's idle timer fired on a kept-alive connection
            faulted.append(req)
            timeout = response(
                b"408 Request Timeout", b"timed out", (b"Content-Type: text/plain", b"Connection: close")
            )
            return Reply(timeout if fault == "408" else b"", close=True)
        return normal(req)

    h.scripted.script = script
    for marker in (first, second):
        h.assert_own_json_answer(await h.post(marker), marker)
    assert faulted, f"{second} never came on a reused connection: the fault was not exercised{h.log()}"
    tries = [s for s in h.scripted.seen if s.marker == second]
    assert len(tries) == 2 and tries[1].nth == 1, f"{second} should be sent twice, again on a new connection{h.log()}"
    await h.assert_still_serves()


async def test_case07_utf8_header_bytes_pass_unchanged(h):
    h.scripted.script = lambda req: Reply(
        response(b"200 OK", json_answer(req.marker), (*answer_of(req)[0], b"X-Note: caf\xc3\xa9"))
    )
    marker = new_marker()
    answer = await h.post(marker)
    h.assert_own_json_answer(answer, marker)
    notes = [value for name, value in answer.response.raw_headers if name.lower() == b"x-note"]
    assert notes == [b"caf\xc3\xa9"], f"X-Note arrived as {notes!r}{h.log()}"
    await h.assert_still_serves()


async def test_case08_chunked_with_trailers(h):
    def script(req: Seen) -> Reply:
        headers, body = answer_of(req)
        chunks = b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in (body[:20], body[20:]))
        head = response(
            b"200 OK", headers=(*headers, b"Transfer-Encoding: chunked", b"Trailer: X-Checksum"), length=False
        )
        return Reply(head + chunks + b"0\r\nX-Checksum: abc\r\n\r\n")

    h.scripted.script = script
    marker = new_marker()
    h.assert_own_json_answer(await h.post(marker), marker)
    await h.assert_still_serves()


async def test_case09_head_with_a_content_length_and_no_body(h):
    h.scripted.script = lambda req: Reply(
        response(b"200 OK", headers=(*answer_of(req)[0], b"Content-Length: 1234"), length=False)
    )
    marker = new_marker()
    answer = await h.request("HEAD", f"/api/hello?marker={marker}")
    assert answer.status == 200 and answer.response.headers.getall("X-Answer", []) == [marker], (
        f"{answer.status} {answer.response.headers!r}{h.log()}"
    )
    assert answer.body == b"" and answer.response.headers.get("Content-Length") == "1234", h.log()
    assert [(s.method, s.marker) for s in h.scripted.seen] == [("HEAD", marker)], h.log()
    await h.assert_still_serves()


@pytest.mark.parametrize("status", [204, 304])
async def test_case10_bodiless_statuses(h, status):
    reason = {204: b"No Content", 304: b"Not Modified"}[status]
    h.scripted.script = lambda req: Reply(
        response(
            b"%d %s" % (status, reason), headers=(b"X-Answer: " + req.marker.encode(), b'ETag: "v1"'), length=False
        )
    )
    marker = new_marker()
    if status == 204:
        answer = await h.post(marker)
    else:
        answer = await h.request("GET", f"/v1/models?marker={marker}", headers={"If-None-Match": '"v1"'})
    assert answer.status == status and answer.response.headers.getall("X-Answer", []) == [marker], (
        f"{answer.status} {answer.response.headers!r}{h.log()}"
    )
    assert answer.body == b""
    await h.assert_still_serves()


async def test_case11_upstream_closes_mid_stream(h):
    def script(req: Seen) -> Reply:
        partial = b"".join(
            event + b"\n\n" for event in sse_answer(req.marker).split(b"\n\n")[:3]
        )  # start, block start, delta
        head = response(b"200 OK", headers=(answer_of(req)[0][0], b"Transfer-Encoding: chunked"), length=False)
        return Reply(head + b"%x\r\n%s\r\n" % (len(partial), partial), close=True)  # no last chunk

    h.scripted.script = script
    marker = new_marker()
    answer = await h.post(marker, stream=True)
    events = [json.loads(line[6:]) for line in answer.body.decode().splitlines() if line.startswith("data: ")]
    assert answer.status == 200 and [e["type"] for e in events[:3]] == [
        "message_start",
        "content_block_start",
        "content_block_delta",
    ], answer.body[:500]
    assert events[-1]["type"] == "error" and events[-1]["error"]["message"], (
        f"the stream ends {answer.body[-300:]!r}{h.log()}"
    )
    assert b"message_stop" not in answer.body
    await h.assert_still_serves()


@pytest.mark.parametrize("status", [429, 500])
async def test_case12_upstream_error_passes_through(h, sdk, status):
    def error_body(marker: str) -> bytes:
        return json.dumps(
            {"type": "error", "error": {"type": "api_error", "message": f"upstream says no to {marker}"}}
        ).encode()

    reason = {429: b"Too Many Requests", 500: b"Internal Server Error"}[status]
    h.scripted.script = lambda req: Reply(
        response(b"%d %s" % (status, reason), error_body(req.marker), (b"Content-Type: application/json",))
    )
    marker = new_marker()
    answer = await h.post(marker)
    assert (answer.status, answer.body) == (status, error_body(marker)), (
        f"{answer.status} {answer.body[:300]!r}{h.log()}"
    )
    marker = new_marker()
    with pytest.raises(anthropic.APIStatusError) as raised:
        await sdk.messages.create(**request_body(marker, stream=True))
    assert raised.value.status_code == status and raised.value.body == json.loads(error_body(marker)), h.log()
    await h.assert_still_serves()
