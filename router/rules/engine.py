"""Compiled rules and the first-match-wins table."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from router.exchange import Exchange
from router.registry import Action, Test


@dataclass(frozen=True)
class Condition:
    """One compiled matcher of a rule, kept with its source for explanations."""

    field: str
    value: Any
    test: Test

    def describe(self) -> str:
        """`field=value` as written in the rules file."""
        return f"{self.field}={self.value!r}"


@dataclass(frozen=True)
class Rule:
    """A named rule: all conditions must hold; then its actions run in order."""

    index: int
    name: str
    line: int | None
    conditions: tuple[Condition, ...]
    actions: tuple[tuple[str, Action], ...]  # (action name, compiled action): edits first, answer last

    def __post_init__(self) -> None:
        # made once here rather than for every request the rule matches
        object.__setattr__(self, "_label", "+".join(getattr(action, "label", name) for name, action in self.actions))
        object.__setattr__(self, "_why", ", ".join(c.describe() for c in self.conditions) or "match-all")

    def failing(self, ex: Exchange) -> Condition | None:
        """The first condition that does not hold, or None when the rule matches."""
        for condition in self.conditions:
            if not condition.test(ex):
                return condition
        return None

    def label(self) -> str:
        """The actions as the log shows them, e.g. `rewrite+forward:local/user`."""
        return self._label  # type: ignore[attr-defined,no-any-return]

    def why(self) -> str:
        """What this rule matched on, for the verbose log."""
        return self._why  # type: ignore[attr-defined,no-any-return]


#: matchers decided by the request line and the client alone (built-in names: no plugin can take them)
BY_REQUEST_LINE = frozenset({"method", "path", "client"})
CANDIDATES_KEPT = 256  # (method, path, client) combinations remembered per table


@dataclass(frozen=True)
class RuleTable:
    """The ordered rules of one loaded file."""

    rules: tuple[Rule, ...]
    #: per (method, path, client, protocol): the rules whose method, path and client conditions
    #: hold, each with the conditions left to test (most requests skip a third of the table)
    _candidates: dict[tuple[str, str, str, str], tuple[tuple[Rule, tuple[Condition, ...]], ...]] = field(
        default_factory=dict, compare=False, repr=False
    )

    def match(self, ex: Exchange) -> Rule | None:
        """The first rule whose conditions all hold."""
        key = (ex.method, ex.path, ex.client, ex.protocol.name)
        candidates = self._candidates.get(key)
        if candidates is None:
            candidates = self._candidates_for(ex, key)
        for rule, conditions in candidates:  # Rule.failing, inlined: this runs for every request
            for condition in conditions:
                if not condition.test(ex):
                    break
            else:
                return rule
        return None

    def _candidates_for(self, ex: Exchange, key: tuple[str, str, str, str]) -> tuple[tuple[Rule, tuple[Condition, ...]], ...]:
        kept = []
        for rule in self.rules:
            if all(c.test(ex) for c in rule.conditions if c.field in BY_REQUEST_LINE):
                kept.append((rule, tuple(c for c in rule.conditions if c.field not in BY_REQUEST_LINE)))
        if len(self._candidates) >= CANDIDATES_KEPT:  # paths are the client's to choose: stay bounded
            self._candidates.clear()
        candidates = self._candidates[key] = tuple(kept)
        return candidates
