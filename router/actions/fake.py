"""`fake`: answer locally with a complete, valid reply in the request's own protocol."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from router.answers import Answer
from router.edits import Edits
from router.jsonutil import dumps
from router.protocols.base import Reply, Request
from router.schema_example import example_from_schema
from router.specs import ActionSpec, BuildContext, Services

SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "text": {"type": "string"},
        "json": {"type": "object"},
        "title_from_prompt": {"type": "boolean"},
        "json_from_schema": {"type": "boolean"},
        "status": {"type": "integer", "minimum": 100, "maximum": 599},
        "stop_reason": {"type": "string"},
    },
    "description": "one of text, json, title_from_prompt, json_from_schema, or a bare status for probes",
}

_SESSION = re.compile(r"<session>(.*?)</session>|User prompt:\s*(.*)", re.DOTALL)
_TAGGED = re.compile(r"<([\w-]+)>.*?</\1>", re.DOTALL)
_WORD = re.compile(r"#?[^\W_][\w'./+#-]*")
TITLE_WORDS = 6
TITLE_CHARS = 36  # Codex's title schema allows 36; Claude Code asks for two to five words


def title_from_prompt(prompt: str) -> str:
    """A short sentence-case title made from the user's own first words."""
    inside = _SESSION.search(prompt)  # the user's words inside a title prompt (Claude Code, Codex)
    text = (inside.group(1) or inside.group(2)) if inside else _TAGGED.sub(" ", prompt)
    words: list[str] = []
    for word in _WORD.findall(text):
        if len(" ".join([*words, word])) > TITLE_CHARS or len(words) == TITLE_WORDS:
            break
        words.append(word.rstrip(".,;:"))
    title = " ".join(w for w in words if w)
    return title[:1].upper() + title[1:] if title else "New session"


ANSWERS = ("text", "json", "title_from_prompt", "json_from_schema")


@dataclass(frozen=True)
class Fake:
    """A compiled fake: one kind of answer (see ANSWERS) and its value, or a bare status (answer None)."""

    answer: str | None
    value: Any
    status: int | None
    stop_reason: str | None

    async def run(self, request: Request, edits: Edits, services: Services) -> Answer:
        """Answer without the upstream, in the format the request asks for."""
        protocol, view = request.protocol, request.view
        if self.answer is None:
            return Answer(self.status or 200)
        if self.answer == "json_from_schema":
            text = dumps(example_from_schema(view.output_schema or {"type": "object"}))
        elif self.answer == "title_from_prompt":
            title = title_from_prompt(view.user)
            text = dumps({"title": title}) if view.wants_json else title
        elif self.answer == "json":
            text = dumps(self.value)
        else:
            text = self.value
        stop_reason = self.stop_reason if self.stop_reason in protocol.stop_reasons else protocol.stop_reasons[0]
        return protocol.reply(request, Reply(text, stop_reason))


def build(options: dict[str, Any], context: BuildContext) -> Fake:
    """Check that exactly one kind of answer is asked for."""
    kinds = [k for k in ANSWERS if options.get(k) not in (None, False)]
    if len(kinds) > 1:
        raise ValueError(f"choose one of {', '.join(ANSWERS)} (got {', '.join(kinds)})")
    if not kinds and "status" not in options:
        raise ValueError(f"say what to answer: {', '.join(ANSWERS)}, or status (for probes)")
    answer = kinds[0] if kinds else None
    return Fake(answer, options.get(answer) if answer else None, options.get("status"), options.get("stop_reason"))


SPEC = ActionSpec("fake", SCHEMA, build, terminal=True, help="answer locally in the request's protocol")
