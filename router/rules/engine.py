"""Compiled rules and the first-match-wins table."""

from __future__ import annotations

from dataclasses import dataclass
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

    def failing(self, ex: Exchange) -> Condition | None:
        """The first condition that does not hold, or None when the rule matches."""
        for condition in self.conditions:
            if not condition.test(ex):
                return condition
        return None

    def label(self) -> str:
        """The actions as the log shows them, e.g. `rewrite+forward:local/user`."""
        return "+".join(getattr(action, "label", name) for name, action in self.actions)

    def why(self) -> str:
        """What this rule matched on, for the verbose log."""
        return ", ".join(c.describe() for c in self.conditions) or "match-all"


@dataclass(frozen=True)
class RuleTable:
    """The ordered rules of one loaded file."""

    rules: tuple[Rule, ...]

    def match(self, ex: Exchange) -> Rule | None:
        """The first rule whose conditions all hold."""
        for rule in self.rules:
            if rule.failing(ex) is None:
                return rule
        return None
