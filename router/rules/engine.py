"""Compiled rules and the first-match-wins table."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from router.protocols.base import Request
from router.specs import Action, Test


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
    label: str = field(init=False)  # the actions as the log shows them, e.g. `rewrite+forward:local/user`
    why: str = field(init=False)  # what the rule matches on, for the verbose log

    def __post_init__(self) -> None:
        object.__setattr__(self, "label", "+".join(getattr(action, "label", name) for name, action in self.actions))
        object.__setattr__(self, "why", ", ".join(c.describe() for c in self.conditions) or "match-all")

    def failing(self, request: Request) -> Condition | None:
        """The first condition that does not hold, or None when the rule matches."""
        for condition in self.conditions:
            if not condition.test(request):
                return condition
        return None


@dataclass(frozen=True)
class RuleTable:
    """The ordered rules of one loaded file."""

    rules: tuple[Rule, ...]

    def match(self, request: Request) -> Rule | None:
        """The first rule whose conditions all hold."""
        return next((rule for rule in self.rules if rule.failing(request) is None), None)
