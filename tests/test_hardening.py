"""Hostile input and hostile neighbours: bodies no parser should choke on, credentials that must
never leak, browsers and foreign hosts, clients that stop reading, and reloads that would expose
the router. Every answer is an error in the client's protocol, never a router 500."""

from __future__ import annotations

import asyncio
import json
import logging
import socket

import aiohttp
import pytest
from aiohttp import web

from router.app import STATE, build_app
from router.config import Overrides, load_config, parse_config
from router.errors import RulesError
from router.plugins import builtin_registry
from tests.conftest import RULES, user_message

GOOD = {"model": "m", "max_tokens": 5, "messages": user_message("hello")}
SECRETS = [
    "sk-ant-header-secret-1",
    "bearer-secret-2",
    "goog-secret-3",
    "azure-secret-4",
    "query-secret-5",
    "url-pass-6",
]
HOSTILE_BODIES = {
    "nested 5,000 deep": b'{"model":"m","max_tokens":5,"messages":' + b"[" * 5000 + b"]" * 5000 + b"}",
    "nested 100,000 deep": b'{"model":"m","max_tokens":5,"messages":' + b"[" * 100_000 + b"]" * 100_000 + b"}",
    "5,000-digit integer": b'{"model":"m","messages":[],"max_tokens":' + b"9" * 5000 + b"}",
    "invalid UTF-8 in a message": b'{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"caf\xe9"}]}',
    "invalid UTF-8 in the model": b'{"model":"\xff\xfe","max_tokens":5,"messages":[]}',
    "invalid UTF-8 in a key": b'{"\xc3":1,"model":"m","max_tokens":5,"messages":[]}',
    "invalid UTF-8 in the system": b'{"model":"m","max_tokens":5,"system":"\xed\xa0\x80","messages":[]}',
    "a lone surrogate escape": b'{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"\\ud83d"}]}',
}


@pytest.mark.parametrize("record", [False, True], ids=["plain", "with --record"])
async def test_hostile_bodies_get_a_400_in_the_clients_protocol_never_a_500(
    aiohttp_server, upstream, tmp_path, record, caplog
):
    config = parse_config(RULES.format(upstream=upstream.url), "rules.yaml", builtin_registry())
    capture = tmp_path / "capture.jsonl"
    router = await aiohttp_server(build_app(config, record=str(capture) if record else None))
    async with aiohttp.ClientSession() as http:
        for name, raw in HOSTILE_BODIES.items():
            async with http.post(
                router.make_url("/v1/messages"), data=raw, headers={"Content-Type": "application/json"}
            ) as r:
                body = await r.json()
                if name == "a lone surrogate escape":  # valid JSON: forwarded as it came
                    assert r.status == 200, body
                    continue
                assert r.status == 400, (name, body)
                assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error", (name, body)
        async with http.post(router.make_url("/v1/messages"), json=GOOD) as r:
            assert r.status == 200, "the router keeps serving"
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], "no traceback, no error: one info line each"
    if record:
        lines = [json.loads(line) for line in capture.read_text().splitlines()]
        assert len(lines) == len(HOSTILE_BODIES) + 1
        assert [line["decision"]["status"] for line in lines].count(400) == len(HOSTILE_BODIES) - 1


async def test_no_credential_reaches_the_upstream_the_log_the_record_the_pages_or_error_bodies(
    aiohttp_server, upstream, tmp_path, caplog, closed_port
):
    port = upstream.url.rsplit(":", 1)[1]
    text = f"""
upstreams:
  local: {{url: "http://user:url-pass-6@127.0.0.1:{port}"}}
  dead: {{url: "http://admin:url-pass-6@127.0.0.1:{closed_port}"}}
rules:
  - {{name: to-dead, match: {{user: dead}}, action: {{forward: {{upstream: dead}}}}}}
  - {{name: main, match: {{}}, action: {{forward: {{upstream: local}}}}}}
"""
    config = parse_config(text, "rules.yaml", builtin_registry())
    capture = tmp_path / "capture.jsonl"
    router = await aiohttp_server(build_app(config, record=str(capture)))
    headers = {
        "x-api-key": SECRETS[0],
        "Authorization": f"Bearer {SECRETS[1]}",
        "x-goog-api-key": SECRETS[2],
        "api-key": SECRETS[3],
    }
    async with aiohttp.ClientSession(headers=headers) as http:
        async with http.post(router.make_url(f"/v1/messages?beta=true&key={SECRETS[4]}"), json=GOOD) as r:
            assert r.status == 200
        async with http.post(
            router.make_url(f"/v1/messages?key={SECRETS[4]}"), json={**GOOD, "messages": user_message("dead")}
        ) as r:
            error_body = await r.text()
            assert r.status in (502, 503) and "127.0.0.1" in error_body
        status = await (await http.get(router.make_url("/_router/status"))).text()
        metrics = await (await http.get(router.make_url("/metrics"))).text()
    seen = upstream.seen[0]
    assert seen.headers.get("Authorization", "").startswith("Basic "), "the URL's credentials are used, as Basic auth"
    forwarded = json.dumps(seen.headers) + seen.path + json.dumps(seen.body)
    for place, text in {
        "upstream": forwarded.replace(seen.headers["Authorization"], ""),
        "log": caplog.text,
        "record": capture.read_text(),
        "status": status,
        "metrics": metrics,
        "error body": error_body,
    }.items():
        for secret in SECRETS:
            assert secret not in text, f"{secret} found in {place}"
    assert "key=<redacted:" in capture.read_text()


async def test_the_forwarded_query_keeps_everything_but_credentials(make_router, upstream, http):
    client = await http(await make_router())
    assert (await client.post("/v1/messages?beta=true&key=s3cr3t&api_key=x", json=GOOD)).status == 200
    assert upstream.seen[0].raw_query == "beta=true"


@pytest.mark.parametrize(
    "headers, why",
    [
        ({"Origin": "https://evil.example"}, "web page"),
        ({"Origin": "null", "Content-Type": "text/plain"}, "web page"),
        ({"Host": "attacker.example:9090"}, "DNS-rebinding"),
    ],
)
async def test_browsers_and_foreign_hosts_are_refused(make_router, upstream, headers, why):
    router = await make_router()
    async with aiohttp.ClientSession() as http:
        async with http.post(router.make_url("/v1/messages"), data=json.dumps(GOOD), headers=headers) as r:
            assert r.status == 403
            error = (await r.json())["error"]
            assert (
                error["type"] == "permission_error"
                and why in error["message"]
                and "security.allowed_" in error["message"]
            )
        async with http.get(router.make_url("/_router/status"), headers=headers) as r:
            assert r.status == 403, "the status page too"
    assert upstream.seen == []


async def test_loopback_names_and_allowed_origins_pass(make_router, upstream, sdk):
    rules = RULES.replace("rules:\n", "security: {{allowed_origins: ['http://127.0.0.1:3000']}}\nrules:\n", 1)
    router = await make_router(rules)
    async with aiohttp.ClientSession() as http:
        for host in ("localhost:9090", "127.0.0.1", "[::1]:9090"):
            async with http.post(router.make_url("/v1/messages"), json=GOOD, headers={"Host": host}) as r:
                assert r.status == 200, host
        async with http.post(
            router.make_url("/v1/messages"), json=GOOD, headers={"Origin": "http://127.0.0.1:3000"}
        ) as r:
            assert r.status == 200
    assert (await sdk(router).messages.create(**GOOD)).content[0].text


async def test_a_client_that_stops_reading_frees_the_slot_after_the_send_timeout(aiohttp_server, sdk, caplog):
    release = asyncio.Event()

    async def firehose(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        if body["messages"][-1]["content"] == "flood":
            chunk = b"event: ping\ndata: {}\n\n" * 4096
            try:
                while True:
                    await response.write(chunk)
            except (ConnectionResetError, asyncio.CancelledError):
                release.set()
                raise
        for event in _message_events("after"):
            await response.write(event)
        return response

    app = web.Application()
    app.router.add_post("/v1/messages", firehose)
    upstream = await aiohttp_server(app)
    rules = RULES.format(upstream=str(upstream.make_url("")).rstrip("/")).replace(
        "rules:\n", "limits: {send_timeout: 1s}\nrules:\n", 1
    )
    router = await aiohttp_server(build_app(parse_config(rules, "rules.yaml", builtin_registry())))
    stopped = socket.create_connection(("127.0.0.1", router.port))
    stopped.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    payload = json.dumps({**GOOD, "stream": True, "messages": user_message("flood")}).encode()
    stopped.sendall(
        b"POST /v1/messages HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(payload), payload)
    )
    try:
        async with sdk(router).messages.stream(**{**GOOD, "messages": user_message("next")}) as stream:
            assert await asyncio.wait_for(stream.get_final_text(), 60) == "after"
        await asyncio.wait_for(release.wait(), 60)
    finally:
        stopped.close()
    assert "limits.send_timeout" in caplog.text


def _message_events(text: str) -> list[bytes]:
    def event(name: str, data: dict) -> bytes:
        return f"event: {name}\ndata: {json.dumps({'type': name, **data})}\n\n".encode()

    message = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "m",
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {"input_tokens": 1, "output_tokens": 1},
    }
    return [
        event("message_start", {"message": message}),
        event("content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}}),
        event("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": text}}),
        event("content_block_stop", {"index": 0}),
        event(
            "message_delta",
            {"delta": {"stop_reason": "end_turn", "stop_sequence": None}, "usage": {"output_tokens": 1}},
        ),
        event("message_stop", {}),
    ]


async def test_queued_bytes_are_bounded(make_router, upstream, http):
    rules = RULES.replace("max_queue: 256", "max_queue: 256\n    max_queued_bytes: 2KiB")
    client = await http(await make_router(rules))
    holder = asyncio.ensure_future(
        client.post("/v1/messages", json={**GOOD, "stream": True}, headers={"x-test-upstream": "hold_before=h"})
    )
    while not upstream.seen:
        await asyncio.sleep(0.01)
    big = {**GOOD, "messages": user_message("x" * 3000)}
    refused = await client.post("/v1/messages", json=big)
    assert refused.status == 529 and "max_queued_bytes" in (await refused.json())["error"]["message"]
    upstream.gate("h").set()
    assert (await holder).status == 200


async def test_hop_by_hop_and_connection_listed_headers_stay_and_targets_are_normalised(make_router, upstream):
    router = await make_router()
    with socket.create_connection(("127.0.0.1", router.port)) as raw:
        payload = json.dumps(GOOD).encode()
        raw.sendall(
            b"POST http://127.0.0.1/v1/x/../messages?beta=true HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: keep-alive, X-Secret-Hop\r\n"
            b"X-Secret-Hop: 1\r\nX-Kept: 2\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
            % (len(payload), payload)
        )
        reply = b""
        while b"message_stop" not in reply and b"end_turn" not in reply:
            data = await asyncio.get_running_loop().run_in_executor(None, raw.recv, 65536)
            if not data:
                break
            reply += data
    assert reply.startswith(b"HTTP/1.1 200"), reply[:200]
    seen = upstream.seen[0]
    assert seen.path == "/v1/messages" and seen.raw_query == "beta=true"
    assert "X-Secret-Hop" not in seen.headers and seen.headers["X-Kept"] == "2"


async def test_a_reload_that_drops_the_keys_of_an_exposed_router_is_refused(tmp_path, upstream):
    keyed = RULES.format(upstream=upstream.url).replace(
        "rules:\n", "auth: {api_keys: ['a-key-of-sixteen-chars']}\nrules:\n", 1
    )
    path = tmp_path / "rules.yaml"
    path.write_text(keyed)
    registry = builtin_registry()
    app = build_app(
        load_config(str(path), registry, Overrides(max_body=2048)),
        registry,
        rules_path=str(path),
        listen_host="0.0.0.0",
        overrides=Overrides(max_body=2048),
    )
    state = app[STATE]
    assert state.config.max_body == 2048
    from router.reload import RulesWatcher

    watcher = RulesWatcher(state, str(path), Overrides(max_body=2048))
    path.write_text(RULES.format(upstream=upstream.url))
    assert not watcher.reload()
    assert "auth.api_keys" in state.last_load_error and state.config.api_keys
    path.write_text(keyed.replace("version: 1", "version: 1\n# edited"))
    assert watcher.reload() and state.config.max_body == 2048, "--max-body survives the reload"


@pytest.mark.parametrize(
    "headers",
    [
        '{"X-A\\r\\nX-Injected": "1"}',
        '{"X-A": "a\\r\\nX-Injected: 1"}',
        '{"X-A": "a\\nb"}',
        '{"X-A": "a\\u0000b"}',
        '{"X A": "1"}',
        '{"": "1"}',
    ],
    ids=["crlf-name", "crlf-value", "lf-value", "nul-value", "space-name", "empty-name"],
)
@pytest.mark.parametrize("where", ["rewrite", "upstream"])
def test_header_edits_that_could_inject_are_refused_at_load(headers, where):
    if where == "rewrite":
        text = RULES.format(upstream="http://127.0.0.1:1").replace(
            "rewrite: {model: local-model, drop_billing_header: true}",
            "rewrite: {model: local-model, drop_billing_header: true, headers: " + headers + "}",
        )
    else:
        text = RULES.format(upstream="http://127.0.0.1:1").replace(
            "    max_concurrency: 1", "    headers: " + headers + "\n    max_concurrency: 1", 1
        )
    assert text != RULES.format(upstream="http://127.0.0.1:1"), "the headers went into the rules"
    with pytest.raises(RulesError, match="headers"):
        parse_config(text, "rules.yaml", builtin_registry())
