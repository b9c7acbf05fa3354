"""A real test upstream on a real port: speaks the Anthropic Messages API, records what it gets,
streams in steps the test controls, and fails loudly when more requests arrive than it has slots.

Behaviour per request comes from the `x-test-upstream` header (the router forwards it), a
comma-separated list of directives:
  events=N        stream N text deltas (default 3)
  delay=S         sleep S seconds between deltas
  hold=NAME       after message_start, wait until the test calls release(NAME)
  hold_before=NAME  wait for release(NAME) before sending any response headers
  first_byte_after=S  send nothing for S seconds, as a server in a long prefill (an agent's first
                  turn only: a request with tools and no tool result yet, in any protocol)
  comments_every=S  as llama-server: a streamed Anthropic answer's headers and an SSE comment at
                  once, then a comment every S seconds during the waits above, then the answer
  status=N        answer with this HTTP status and an Anthropic-shaped error
  die_after=N     stream N deltas, then drop the connection (with die_when=NAME: once gate NAME opens)
  stall_after=N   stream N deltas, then go silent (connection kept open)
  hold_end=NAME   a stream's last event sent, wait for release(NAME) before ending the body
  tool=NAME       answer with a tool_use block calling NAME
  stop=REASON     the Anthropic answer's stop_reason (default end_turn, tool_use with tool=NAME)
  overflow        answer llama-server's context-size error (on every path)
  garbage         answer 200 with an HTML page
On /v1/chat/completions (llama-server's chunk shapes: a role chunk with null content, pieces of
PIECE characters, tool call fragments by index, finish_reason, a usage chunk when asked):
  say=TEXT        answer TEXT
  reasoning=TEXT  reason TEXT first (reasoning_content deltas; with `think`, inside <think> tags)
  calls=N         call N tools (tool0, tool1, ...), CALLS_PER_CHUNK fragments a chunk
  snapshots       send each call's whole arguments so far instead of fragments
  cached=N        report N cached prompt tokens
  whole           answer in one piece even when asked for a stream
  always_stream   stream even when asked for one piece
GET /slots answers `slot_report` when the test sets one (llama-server's slot list: see llama_slot),
else 404 as a server without it; either way it takes no slot and is not in `seen`.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass
class Seen:
    """One request as the upstream received it."""

    path: str
    headers: dict[str, str]
    body: Any
    arrived: float
    raw: bytes = b""
    outcome: str = "running"  # running, done, cancelled, error
    raw_query: str = ""

    @property
    def user_text(self) -> str:
        """Text of the last message, for identifying requests in order checks."""
        content = (
            self.body["messages"][-1]["content"] if isinstance(self.body, dict) and self.body.get("messages") else ""
        )
        if isinstance(content, list):
            return " ".join(b.get("text", "") for b in content if isinstance(b, dict))
        return content


@dataclass
class FakeUpstream:
    """The test server's state; `app()` builds its aiohttp application."""

    slots: int = 1
    in_flight: int = 0
    max_in_flight: int = 0
    violations: list[str] = field(default_factory=list)
    seen: list[Seen] = field(default_factory=list)
    last_event_sent: dict[int, float] = field(default_factory=dict)
    #: play a coding agent's model: with tools, call this shell command, then report its output
    agent_command: str | None = None
    #: on /v1/chat/completions, reason this first (reasoning_content), as a thinking model does
    agent_reasoning: str = ""
    #: ... inside <think> tags in the text instead (llama-server with --reasoning-format none)
    agent_think: bool = False
    tokenize_calls: int = 0
    #: what GET /slots answers, set by the test (progress comes from the test, never from a clock)
    slot_report: list[dict[str, Any]] | None = None
    slots_calls: int = 0
    _gates: dict[str, asyncio.Event] = field(default_factory=dict)
    started: asyncio.Event = field(default_factory=asyncio.Event)

    async def _prefill(self, seen: Seen, d: dict[str, str]) -> None:
        """The wait before an answer: hold_before's gate, then first_byte_after's seconds."""
        if "hold_before" in d:
            await self.gate(d["hold_before"]).wait()
        first_turn = isinstance(seen.body, dict) and seen.body.get("tools") and not _has_tool_result(seen.body)
        if "first_byte_after" in d and first_turn:
            await asyncio.sleep(float(d["first_byte_after"]))  # the prefill being played, not a synchronisation

    def gate(self, name: str) -> asyncio.Event:
        """The event a `hold=NAME` request waits on."""
        return self._gates.setdefault(name, asyncio.Event())

    def release(self, name: str) -> None:
        """Let `hold=NAME` requests go on."""
        self.gate(name).set()

    async def _end(self, response: web.StreamResponse, d: dict[str, str]) -> None:
        """End a stream's body, once `hold_end=NAME`'s gate opens when there is one."""
        if "hold_end" in d:
            await self.gate(d["hold_end"]).wait()
        await response.write_eof()

    async def wait_for(self, count: int, timeout: float = 5.0) -> None:
        """Wait until COUNT requests have arrived."""
        deadline = time.monotonic() + timeout
        while len(self.seen) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"upstream saw {len(self.seen)} requests, expected {count}")
            await asyncio.sleep(0.005)

    async def wait_outcome(self, index: int, outcome: str, timeout: float = 5.0) -> None:
        """Wait until request INDEX ends with OUTCOME."""
        deadline = time.monotonic() + timeout
        while self.seen[index].outcome != outcome:
            if time.monotonic() > deadline:
                raise AssertionError(f"request {index} is {self.seen[index].outcome}, expected {outcome}")
            await asyncio.sleep(0.005)

    def app(self) -> web.Application:
        """The aiohttp application."""
        app = web.Application(client_max_size=256 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self.handle)
        return app

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """Count slots, record, then behave as the directives say."""
        if request.path == "/tokenize":  # llama-server answers these on its HTTP threads, not in a slot
            self.tokenize_calls += 1
            content = (await request.json()).get("content", "")
            return web.json_response({"tokens": list(range(len(content.split())))})
        if request.path == "/slots":  # llama-server answers it between prompt batches, not in a slot
            self.slots_calls += 1
            if self.slot_report is None:
                return web.json_response({"error": {"code": 404, "message": "File Not Found"}}, status=404)
            return web.json_response(self.slot_report)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        raw = await request.read()
        try:
            body = json.loads(raw) if raw else None
        except (ValueError, RecursionError):  # the router forwards what it was sent, however deep
            body = raw.decode(errors="replace")
        seen = Seen(request.path, dict(request.headers), body, time.monotonic(), raw, raw_query=request.query_string)
        self.seen.append(seen)
        self.started.set()
        try:
            if self.in_flight > self.slots:
                self.violations.append(f"{self.in_flight} requests in flight with {self.slots} slot(s): {request.path}")
                seen.outcome = "error"
                return web.json_response(
                    {"type": "error", "error": {"type": "api_error", "message": "slot overflow"}}, status=500
                )
            response = await self._behave(request, seen, _directives(request.headers.get("x-test-upstream", "")))
            if seen.outcome == "running":
                seen.outcome = "done"
            return response
        except (asyncio.CancelledError, ConnectionResetError):
            seen.outcome = "cancelled"
            raise
        except (TypeError, KeyError, AttributeError, IndexError, ValueError, RecursionError) as exc:
            # a body a real server would refuse (the router forwards what it was sent): a 400, as
            # such a server answers, so a test can tell it from a router failure
            seen.outcome = "error"
            message = f"the fake upstream cannot use this body: {type(exc).__name__}"
            return web.json_response(
                {"type": "error", "error": {"type": "invalid_request_error", "message": message}}, status=400
            )
        finally:
            self.in_flight -= 1

    async def _behave(self, request: web.Request, seen: Seen, d: dict[str, str]) -> web.StreamResponse:
        prepared = None
        if (
            "comments_every" in d
            and request.path == "/v1/messages"
            and isinstance(seen.body, dict)
            and seen.body.get("stream")
        ):
            # as llama-server: the stream's headers at once, then SSE comments while the prompt is read
            prepared = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await prepared.prepare(request)
            await prepared.write(b":\n\n")
        prefill = asyncio.ensure_future(self._prefill(seen, d))
        try:
            while not prefill.done():
                await asyncio.wait({prefill}, timeout=float(d["comments_every"]) if prepared else None)
                if prepared and not prefill.done():
                    await prepared.write(b":\n\n")
        finally:
            prefill.cancel()
        if prepared and "status" in d:
            raise ValueError("comments_every goes with a streamed answer, not with status=N")
        if "status" in d:
            status = int(d["status"])
            seen.outcome = "error"
            return web.json_response(
                {"type": "error", "error": {"type": "upstream_says", "message": f"upstream error {status}"}},
                status=status,
            )
        body = seen.body if isinstance(seen.body, dict) else {}
        if "garbage" in d:  # a server that is not what the rules say it is
            return web.Response(text="<html>a web page</html>", content_type="text/html")
        if "overflow" in d:  # llama-server answers it on every API it serves
            seen.outcome = "error"
            return web.json_response(LLAMA_OVERFLOW, status=400)
        if request.path == "/v1/chat/completions":
            return await self._openai_chat(request, body, d)
        if request.path == "/v1/responses":
            return await self._openai_responses(request, body)
        if request.path.startswith("/v1beta/models/"):
            return await self._gemini(request, body)
        if self.agent_command and body.get("tools") and "tool" not in d:
            result = _tool_result_text(body)
            if result is None:
                names = [t.get("name") for t in body["tools"] if isinstance(t, dict)]
                shells = ("Bash", "bash", "shell", "run_shell_command", "exec_command")  # each client's shell tool
                d = {**d, "tool": next((n for n in shells if n in names), "Bash")}
            else:
                d = {**d, "say": f"The command printed: {result.strip()}"}
        events = int(d.get("events", 3))
        delay = float(d.get("delay", 0))
        model = body.get("model", "upstream-model")
        if not body.get("stream"):
            if "hold" in d:
                await self.gate(d["hold"]).wait()
            whole = _message(
                model, d.get("say") or "".join(f"tok{i} " for i in range(events)), d.get("tool"), self.agent_command
            )
            return web.json_response({**whole, "stop_reason": d.get("stop", whole["stop_reason"])})
        response = prepared or web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        if not prepared:
            await response.prepare(request)
        start = _message(model, "", None, None)
        start.update(content=[], stop_reason=None)
        await response.write(_sse("message_start", {"type": "message_start", "message": start}))
        if "hold" in d:
            await self.gate(d["hold"]).wait()
        index = 0
        if d.get("tool"):
            block = {"type": "tool_use", "id": "toolu_test1", "name": d["tool"], "input": {}}
            await response.write(
                _sse("content_block_start", {"type": "content_block_start", "index": 0, "content_block": block})
            )
            delta = {"type": "input_json_delta", "partial_json": json.dumps(_tool_input(self.agent_command))}
            await response.write(
                _sse("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": delta})
            )
            await response.write(_sse("content_block_stop", {"type": "content_block_stop", "index": 0}))
        else:
            await response.write(
                _sse(
                    "content_block_start",
                    {"type": "content_block_start", "index": index, "content_block": {"type": "text", "text": ""}},
                )
            )
            if d.get("say"):
                delta = {"type": "text_delta", "text": d["say"]}
                await response.write(
                    _sse("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta})
                )
                events = 0
            for i in range(events):
                if "stall_after" in d and i == int(d["stall_after"]):
                    await asyncio.sleep(3600)  # alive but silent
                if "die_after" in d and i == int(d["die_after"]):
                    if "die_when" in d:  # the test opens this gate once the client has what came before
                        await self.gate(d["die_when"]).wait()
                    seen.outcome = "died"
                    assert request.transport is not None
                    request.transport.abort()
                    return response
                if delay:
                    await asyncio.sleep(delay)
                delta = {"type": "text_delta", "text": f"tok{i} "}
                await response.write(
                    _sse("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta})
                )
            await response.write(_sse("content_block_stop", {"type": "content_block_stop", "index": index}))
        stop = d.get("stop") or ("tool_use" if d.get("tool") else "end_turn")
        await response.write(
            _sse(
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": stop, "stop_sequence": None},
                    "usage": {"output_tokens": events},
                },
            )
        )
        self.last_event_sent[id(seen)] = time.monotonic()
        await response.write(_sse("message_stop", {"type": "message_stop"}))
        await self._end(response, d)
        return response

    async def _openai_chat(self, request: web.Request, body: dict[str, Any], d: dict[str, str]) -> web.StreamResponse:
        """OpenAI chat completions in llama-server's chunk shapes: a tool call first when playing an
        agent (then the tool's output), or what the directives ask for."""
        messages = body.get("messages") or []
        last = messages[-1] if messages else {}
        calls: list[dict[str, Any]] = []
        if self.agent_command and body.get("tools") and last.get("role") != "tool":
            name = next(
                (
                    t["function"]["name"]
                    for t in body["tools"]
                    if t.get("function", {}).get("name") in ("bash", "Bash", "shell")
                ),
                body["tools"][0]["function"]["name"],
            )
            arguments = {"command": self.agent_command, "description": "Run the command the test asked for"}
            calls.append({"id": "call_test1", "name": name, "arguments": json.dumps(arguments)})
        for i in range(int(d.get("calls", 0))):
            calls.append(
                {"id": f"call_{i}", "name": f"tool{i}", "arguments": json.dumps({"n": i, "path": f"f{i}.txt"})}
            )
        reasoning = d.get("reasoning", self.agent_reasoning)
        if calls:
            text = ""
        elif "say" in d:
            text = d["say"]
        elif last.get("role") == "tool":
            text = f"The command printed: {str(last.get('content', '')).strip()}"
        else:
            text = "tok0 tok1 tok2 "
        if "think" in d or (self.agent_think and reasoning):
            text, reasoning = f"<think>{reasoning}</think>\n\n{text}", ""
        finish = "tool_calls" if calls else "stop"
        usage = {
            "prompt_tokens": 5,
            "completion_tokens": 3,
            "total_tokens": 8,
            "prompt_tokens_details": {"cached_tokens": int(d.get("cached", 0))},
        }
        whole = "whole" in d or (not body.get("stream") and "always_stream" not in d)
        if whole:
            message: dict[str, Any] = {"role": "assistant", "content": text or None}
            if reasoning:
                message["reasoning_content"] = reasoning
            if calls:
                message["tool_calls"] = [
                    {"id": c["id"], "type": "function", "function": {"name": c["name"], "arguments": c["arguments"]}}
                    for c in calls
                ]
            return web.json_response(
                {
                    "id": "chatcmpl-up",
                    "object": "chat.completion",
                    "created": 0,
                    "model": body.get("model"),
                    "choices": [{"index": 0, "message": message, "finish_reason": finish}],
                    "usage": usage,
                }
            )
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        base = {"id": "chatcmpl-up", "object": "chat.completion.chunk", "created": 0, "model": body.get("model")}

        async def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> None:
            data = {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}]}
            await response.write(f"data: {json.dumps(data)}\n\n".encode())

        size = int(d.get("piece", 4))
        await chunk({"role": "assistant", "content": None})
        if "hold" in d:
            await self.gate(d["hold"]).wait()
        for at in range(0, len(reasoning), size):
            await chunk({"reasoning_content": reasoning[at : at + size]})
        for number, at in enumerate(range(0, len(text), size)):
            if "die_after" in d and number == int(d["die_after"]):
                if "die_when" in d:
                    await self.gate(d["die_when"]).wait()
                assert request.transport is not None
                request.transport.abort()
                return response
            await chunk({"content": text[at : at + size]})
        fragments: list[dict[str, Any]] = []
        for index, call in enumerate(calls):
            head = {"name": call["name"], "arguments": ""}
            fragments.append({"index": index, "id": call["id"], "type": "function", "function": head})
            arguments = call["arguments"]
            for at in range(0, len(arguments), size):
                piece = arguments[: at + size] if "snapshots" in d else arguments[at : at + size]
                fragments.append({"index": index, "function": {"arguments": piece}})
        per_chunk = int(d.get("calls_per_chunk", 1))
        for at in range(0, len(fragments), per_chunk):
            await chunk({"tool_calls": fragments[at : at + per_chunk]})
        await chunk({}, finish)
        if (body.get("stream_options") or {}).get("include_usage"):
            timings = {"prompt_n": 5, "predicted_n": 3}
            last_chunk = {**base, "choices": [], "usage": usage, "timings": timings}
            await response.write(f"data: {json.dumps(last_chunk)}\n\n".encode())
        await response.write(b"data: [DONE]\n\n")
        await self._end(response, d)
        return response

    async def _openai_responses(self, request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
        """OpenAI Responses: a function call first when playing an agent, then the tool's output."""
        items = body.get("input") or []
        outputs = [i for i in items if isinstance(i, dict) and i.get("type") == "function_call_output"]
        call = bool(self.agent_command and body.get("tools") and not outputs)
        if call:
            item = {
                "type": "function_call",
                "id": "fc_test1",
                "call_id": "call_test1",
                "name": "exec_command",
                "arguments": json.dumps({"cmd": self.agent_command}),
                "status": "completed",
            }
        else:
            said = str(outputs[-1].get("output", "")) if outputs else ""
            text = f"The command printed: {said.strip()}" if outputs else "tok0 tok1 tok2 "
            item = {
                "type": "message",
                "id": "msg_up1",
                "status": "completed",
                "role": "assistant",
                "content": [{"type": "output_text", "text": text, "annotations": []}],
            }
        done = {
            "id": "resp_up1",
            "object": "response",
            "created_at": 0,
            "status": "completed",
            "model": body.get("model"),
            "output": [item],
            "usage": {
                "input_tokens": 5,
                "input_tokens_details": {"cached_tokens": 0},
                "output_tokens": 3,
                "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": 8,
            },
        }
        if not body.get("stream"):
            return web.json_response(done)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        sequence = iter(range(100))

        async def event(name: str, data: dict[str, Any]) -> None:
            await response.write(
                f"event: {name}\ndata: {json.dumps({'type': name, **data, 'sequence_number': next(sequence)})}\n\n".encode()
            )

        await event("response.created", {"response": {**done, "status": "in_progress", "output": []}})
        await event("response.output_item.added", {"output_index": 0, "item": {**item, "status": "in_progress"}})
        if not call:
            text = item["content"][0]["text"]
            where = {"item_id": item["id"], "output_index": 0, "content_index": 0}
            await event(
                "response.content_part.added", {**where, "part": {"type": "output_text", "text": "", "annotations": []}}
            )
            await event("response.output_text.delta", {**where, "delta": text})
            await event("response.output_text.done", {**where, "text": text})
            await event("response.content_part.done", {**where, "part": item["content"][0]})
        await event("response.output_item.done", {"output_index": 0, "item": item})
        await event("response.completed", {"response": done})
        await response.write_eof()
        return response

    async def _gemini(self, request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
        """Gemini generateContent / streamGenerateContent: a function call first when playing an agent."""
        contents = body.get("contents") or []
        responses = [
            p["functionResponse"]
            for c in contents
            for p in c.get("parts", [])
            if isinstance(p, dict) and "functionResponse" in p
        ]
        if self.agent_command and body.get("tools") and not responses:
            part: dict[str, Any] = {
                "functionCall": {
                    "name": "run_shell_command",
                    "args": {"command": self.agent_command, "description": "Run the command the test asked for"},
                }
            }
        elif responses:
            output = responses[-1].get("response", {})
            part = {"text": f"The command printed: {json.dumps(output)}"}
        else:
            part = {"text": "tok0 tok1 tok2 "}
        reply = {
            "candidates": [{"content": {"parts": [part], "role": "model"}, "finishReason": "STOP", "index": 0}],
            "usageMetadata": {"promptTokenCount": 5, "candidatesTokenCount": 3, "totalTokenCount": 8},
            "modelVersion": "upstream",
        }
        if ":streamGenerateContent" not in request.path:
            return web.json_response(reply)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(f"data: {json.dumps(reply)}\r\n\r\n".encode())
        await response.write_eof()
        return response


def llama_slot(
    slot: int, task: int | None = None, processed: int = 0, cached: int = 0, decoded: int = 0, busy: bool = True
) -> dict[str, Any]:
    """One slot as llama-server's GET /slots shows it (the fields the router reads, and a few more);
    TASK None: a slot that never had a task."""
    doc: dict[str, Any] = {"id": slot, "n_ctx": 32768, "speculative": False, "is_processing": busy and task is not None}
    if task is not None:
        doc.update(
            id_task=task,
            n_prompt_tokens=cached + processed,
            n_prompt_tokens_processed=processed,
            n_prompt_tokens_cache=cached,
            params={"n_predict": -1, "stream": False},
            next_token=[{"has_next_token": True, "has_new_line": False, "n_remain": -1, "n_decoded": decoded}],
        )
    return doc


LLAMA_OVERFLOW = {
    "error": {
        "code": 400,
        "message": "request (40021 tokens) exceeds the available context size (32768 tokens), try increasing it",
        "type": "exceed_context_size_error",
        "n_prompt_tokens": 40021,
        "n_ctx": 32768,
    }
}


def _directives(header: str) -> dict[str, str]:
    pairs = [item.split("=", 1) for item in header.split(",") if item.strip()]
    return {k.strip(): (v[0].strip() if v else "") for k, *v in pairs}


def _tool_input(command: str | None) -> dict[str, str]:
    return {"command": command or "echo hi", "description": "Run the command the test asked for"}


def _has_tool_result(body: dict[str, Any]) -> bool:
    """Whether an agent's request carries a tool's result yet, in any of the four protocols."""
    if _tool_result_text(body) is not None:
        return True
    messages = body.get("messages") if isinstance(body.get("messages"), list) else []
    items = body.get("input") if isinstance(body.get("input"), list) else []
    contents = body.get("contents") if isinstance(body.get("contents"), list) else []
    return (
        any(isinstance(m, dict) and m.get("role") == "tool" for m in messages)
        or any(isinstance(i, dict) and i.get("type") == "function_call_output" for i in items)
        or any(
            isinstance(p, dict) and "functionResponse" in p
            for c in contents
            if isinstance(c, dict)
            for p in c.get("parts") or []
        )
    )


def _tool_result_text(body: dict[str, Any]) -> str | None:
    """The text of a tool_result in the last user message, or None if there is none."""
    content = body["messages"][-1].get("content") if body.get("messages") else None
    for block in content if isinstance(content, list) else []:
        if isinstance(block, dict) and block.get("type") == "tool_result":
            inner = block.get("content")
            if isinstance(inner, list):
                return " ".join(b.get("text", "") for b in inner if isinstance(b, dict))
            return str(inner or "")
    return None


def _message(model: str, text: str, tool: str | None, command: str | None = None) -> dict[str, Any]:
    content: list[dict[str, Any]] = (
        [{"type": "tool_use", "id": "toolu_test1", "name": tool, "input": _tool_input(command)}]
        if tool
        else [{"type": "text", "text": text}]
    )
    return {
        "id": "msg_upstream",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": "tool_use" if tool else "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": 10, "output_tokens": 3},
    }


def _sse(event: str, data: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()
