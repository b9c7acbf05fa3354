"""Valid answers, streams and requests of each API, spoiled at one place (a value replaced by one
of another type, or a field dropped), must still translate or be refused in words: a whole answer
raises what the translation reads as unreadable (a 502 for the client), a stream ends in a Failure
event, a request is a BadRequest. Never another exception, which would be a router 500.

The property tests in test_translate_streams.py draw shapes from scratch and rarely reach deep
fields; these start from what each API really sends, so every field is reached."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from router.errors import BadRequest
from router.jsonutil import dumps_bytes
from router.translate import hub
from router.translate.apis import APIS, StreamTranslator, answer_of, render_answer, translate_request
from router.translate.fields import UNREADABLE
from tests.translate_cases import answers, anthropic_requests, gemini_requests, openai_requests, responses_requests

API_NAMES = sorted(APIS)
REQUESTS = {
    "anthropic": anthropic_requests(),
    "openai-chat": openai_requests(),
    "gemini": gemini_requests(),
    "openai-responses": responses_requests(),
}
ODD_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-2, 2),
    st.just(10**30),
    st.floats(allow_nan=False),
    st.text(max_size=3),
    st.lists(st.integers(0, 2), max_size=2),
    st.dictionaries(st.text(max_size=2), st.integers(), max_size=2),
)
MUTATIONS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def places(value: Any, at: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """The path of VALUE itself and of everything inside it."""
    yield at
    inner = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in inner:
        yield from places(item, (*at, key))


@st.composite
def spoiled(draw: st.DrawFn, value: Any) -> Any:
    """VALUE with one place replaced by an odd value, or (half the time, below the top) removed."""
    at = draw(st.sampled_from(list(places(value))))
    if not at:
        return draw(ODD_VALUES)
    value = copy.deepcopy(value)
    holder = value
    for key in at[:-1]:
        holder = holder[key]
    if draw(st.booleans()):
        del holder[at[-1]]
    else:
        holder[at[-1]] = draw(ODD_VALUES)
    return value


def rendered_for_every_client(answer: hub.Answer) -> None:
    for client in API_NAMES:
        render_answer(client, answer, stream=False)
        render_answer(client, answer, stream=True)


@MUTATIONS
@given(answers(signatures=False), st.sampled_from(API_NAMES), st.data())
def test_a_spoiled_whole_answer_is_translated_or_unreadable(answer, upstream, data):
    raw = json.dumps(data.draw(spoiled(APIS[upstream].answer_from_hub(answer)))).encode()
    try:
        read = answer_of(upstream, raw, streamed=False)
    except UNREADABLE:
        return
    rendered_for_every_client(read)


@MUTATIONS
@given(answers(signatures=False), st.sampled_from(API_NAMES), st.data())
def test_a_spoiled_stream_event_is_translated_or_ends_in_a_failure(answer, upstream, data):
    blocks = APIS[upstream].encoder(True).encode(hub.events_of(answer)).split(b"\n\n")
    with_data = [i for i, block in enumerate(blocks) if b"data: {" in block]
    which = data.draw(st.sampled_from(with_data))
    lines = blocks[which].split(b"\n")
    line = next(i for i, text in enumerate(lines) if text.startswith(b"data: "))
    lines[line] = b"data: " + json.dumps(data.draw(spoiled(json.loads(lines[line][6:])))).encode()
    blocks[which] = b"\n".join(lines)
    raw = b"\n\n".join(blocks)
    for client in API_NAMES:
        translator = StreamTranslator(upstream, client)
        translator.feed(raw)
        translator.close()
    try:
        read = answer_of(upstream, raw, streamed=True)
    except (*UNREADABLE, hub.StreamError):
        return
    rendered_for_every_client(read)


@MUTATIONS
@given(st.sampled_from(API_NAMES), st.data())
def test_a_spoiled_request_is_translated_or_refused_as_a_bad_request(client, data):
    body = data.draw(spoiled(data.draw(REQUESTS[client])))
    if not isinstance(body, dict):
        return
    for upstream in API_NAMES:
        if upstream == client:
            continue
        try:
            dumps_bytes(translate_request(client, upstream, body))
        except BadRequest:
            pass
