"""Prefix-stable prompts: Claude Code's volatile text moved after the stable text (Anthropic bodies).

A local server reuses its cached prompt only up to the first token that differs from the last
prompt it saw. Claude Code 2.1.331-2.1.332 lays a new conversation out as

    system:    [billing block] [agent intro] [system prompt ... "# Memory" section naming the
               project's memory folder ... more prompt]
    tools:     (rendered after the system text by chat templates)
    messages:  user   [CLAUDE.md] [git status] [attribution] <the user's first words>
               system "# Environment" (working directory, git or not, OS, model) + deferred tools,
                      agent types, skills (~9 KB, the same everywhere) + "Today's date is ..."

so a new conversation in the same project differs from the user's first words on (the ~2.3k-token
environment message after them is processed again), and one in another project from the memory
path ~2.5k characters into the system prompt (the rest of the prompt, the tools and everything
after them are processed again).

`environment_first` moves the role:"system" messages that follow the first user message (the
environment message) ahead of it. `project_context_last` cuts the per-project and per-day text out
of the stable parts: the system prompt's `# Memory` section, the environment message's opening
`# Environment` paragraph and its `Today's date is ...` line, and puts them, concatenated in that
order, in one role:"system" message right before the first user message. Nothing is added or
dropped: every character of text is still in the request, only in another place. Each function
works on DOC, a shallow copy of the body's top level, and never changes a nested value in place.
"""

from __future__ import annotations

from typing import Any

MEMORY_HEADING = "# Memory\n"
ENVIRONMENT_HEADING = "# Environment\n"
DATE_LINE = "Today's date is "


def stable_prefix(doc: dict[str, Any], environment_first: bool, project_context_last: bool) -> int:
    """Reorder DOC's volatile text as asked; the number of characters of text moved (0: unchanged)."""
    messages = doc.get("messages")
    if not isinstance(messages, list) or not (environment_first or project_context_last):
        return 0
    first_user = next((i for i, m in enumerate(messages) if _role(m) == "user"), None)
    if first_user is None:
        return 0
    end = first_user + 1  # the role:"system" messages right after the first user message
    while end < len(messages) and _role(messages[end]) == "system":
        end += 1
    environment = list(messages[first_user + 1 : end])
    moved = 0
    project: list[str] = []
    if project_context_last:
        system, memory = _cut_from_system(doc.get("system"))
        if memory:
            doc["system"] = system
            project.append(memory)
        if environment:
            message, head, date = _cut_from_environment(environment[0])
            if head or date:
                environment[0] = message
                project += [piece for piece in (head, date) if piece]
        moved += sum(len(piece) for piece in project)
    before = [{"role": "system", "content": "".join(project)}] if project else []
    if environment_first and environment:
        before = environment + before
        moved += sum(_text_length(m) for m in environment)
        environment = []
    if not moved and not project:
        return 0
    doc["messages"] = [*messages[:first_user], *before, messages[first_user], *environment, *messages[end:]]
    return moved


def _role(message: Any) -> Any:
    return message.get("role") if isinstance(message, dict) else None


def _text_length(message: dict[str, Any]) -> int:
    content = message.get("content")
    if isinstance(content, str):
        return len(content)
    if isinstance(content, list):
        return sum(len(b["text"]) for b in content if isinstance(b, dict) and isinstance(b.get("text"), str))
    return 0


def cut_section(text: str, heading: str) -> tuple[str, str] | None:
    """TEXT without its markdown section HEADING (up to the next top-level `# ` heading), and the
    section; None when TEXT has no such section."""
    if text.startswith(heading):
        start = 0
    else:
        found = text.find("\n" + heading)
        if found < 0:
            return None
        start = found + 1
    following = text.find("\n# ", start + len(heading) - 1)
    end = len(text) if following < 0 else following + 1
    return text[:start] + text[end:], text[start:end]


def cut_head(text: str, heading: str) -> tuple[str, str] | None:
    """TEXT without its opening paragraph (HEADING up to and including the first blank line), and
    that paragraph; None when TEXT does not start with HEADING."""
    if not text.startswith(heading):
        return None
    blank = text.find("\n\n")
    end = len(text) if blank < 0 else blank + 2
    return text[end:], text[:end]


def cut_line(text: str, prefix: str) -> tuple[str, str] | None:
    """TEXT without its last line that starts with PREFIX (the line's newline stays), and that
    line; None when there is none."""
    found = text.rfind("\n" + prefix)
    if found >= 0:
        start = found + 1
    elif text.startswith(prefix):
        start = 0
    else:
        return None
    stop = text.find("\n", start)
    end = len(text) if stop < 0 else stop
    return text[:start] + text[end:], text[start:end]


def _cut_from_system(system: Any) -> tuple[Any, str]:
    """SYSTEM (a string or text blocks) without its `# Memory` section, and the section ("" if none)."""
    if isinstance(system, str):
        cut = cut_section(system, MEMORY_HEADING)
        return (cut[0], cut[1]) if cut else (system, "")
    if not isinstance(system, list):
        return system, ""
    for index, block in enumerate(system):
        text = block.get("text") if isinstance(block, dict) else None
        if isinstance(text, str) and (cut := cut_section(text, MEMORY_HEADING)):
            return [*system[:index], {**block, "text": cut[0]}, *system[index + 1 :]], cut[1]
    return system, ""


def _cut_from_environment(message: Any) -> tuple[Any, str, str]:
    """The environment MESSAGE without its opening `# Environment` paragraph and its date line, the
    paragraph and the line ("" for each not found)."""
    if not isinstance(message, dict):
        return message, "", ""
    content = message.get("content")
    if isinstance(content, str):
        text, head, date = _cut_environment_text(content)
        return ({**message, "content": text} if head or date else message), head, date
    if not isinstance(content, list):
        return message, "", ""
    blocks = list(content)
    head = date = ""
    for index, block in enumerate(blocks):
        value = block.get("text") if isinstance(block, dict) and block.get("type") == "text" else None
        if not isinstance(value, str):
            continue
        rest, block_head, block_date = _cut_environment_text(value, want_head=not head, want_date=not date)
        if block_head or block_date:
            blocks[index] = {**block, "text": rest}
            head, date = head or block_head, date or block_date
    return ({**message, "content": blocks} if head or date else message), head, date


def _cut_environment_text(text: str, want_head: bool = True, want_date: bool = True) -> tuple[str, str, str]:
    head = date = ""
    if want_head and (cut := cut_head(text, ENVIRONMENT_HEADING)):
        text, head = cut
    if want_date and (cut := cut_line(text, DATE_LINE)):
        text, date = cut
    return text, head, date
