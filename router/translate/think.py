"""Reasoning that a local server leaves in the answer text, between `<think>` and `</think>`."""

from __future__ import annotations


class ThinkSplitter:
    """Splits streamed text into reasoning (a leading `<think>...</think>`) and answer text,
    whatever pieces the tags arrive in."""

    OPEN, CLOSE = "<think>", "</think>"

    def __init__(self) -> None:
        self._state = "start"  # start: nothing but blanks yet; thinking; answer
        self._held = ""

    def feed(self, text: str) -> list[tuple[str, str]]:
        """(kind, text) pieces, kind "reasoning" or "text"; a possible tag's start is held back."""
        self._held += text
        pieces: list[tuple[str, str]] = []
        while self._held:
            if self._state == "start":
                stripped = self._held.lstrip()
                if stripped.startswith(self.OPEN):
                    self._state, self._held = "thinking", stripped[len(self.OPEN) :]
                elif self.OPEN.startswith(stripped):
                    break  # blanks or the start of the tag: wait for more
                else:
                    self._state = "answer"
            elif self._state == "thinking":
                end = self._held.find(self.CLOSE)
                if end == -1:
                    keep = _partial_suffix(self._held, self.CLOSE)
                    cut = len(self._held) - keep
                    if cut:
                        pieces.append(("reasoning", self._held[:cut]))
                    self._held = self._held[cut:]
                    break
                if end:
                    pieces.append(("reasoning", self._held[:end]))
                self._state, self._held = "after", self._held[end + len(self.CLOSE) :]
            elif self._state == "after":
                self._held = self._held.lstrip()  # the blank line between reasoning and answer
                if self._held:
                    self._state = "answer"
            else:
                pieces.append(("text", self._held))
                self._held = ""
        return pieces

    def close(self) -> list[tuple[str, str]]:
        """What is still held when the text ends (blanks that only ever came first are the answer;
        blanks after `</think>` are the gap before one that never came)."""
        held, self._held = self._held, ""
        if not held or (not held.strip() and self._state == "after"):
            return []
        return [("reasoning" if self._state == "thinking" else "text", held)]


def _partial_suffix(text: str, tag: str) -> int:
    """The length of the longest end of TEXT that begins TAG."""
    for size in range(min(len(tag) - 1, len(text)), 0, -1):
        if tag.startswith(text[-size:]):
            return size
    return 0
