"""The built-in actions: fake, estimate, rewrite, forward, reject. One file each."""

from __future__ import annotations

from router.registry import Registry


def register_builtin_actions(registry: Registry) -> None:
    """Register every built-in action."""
    from router.actions import estimate, fake, forward, reject, rewrite

    for module in (rewrite, fake, estimate, forward, reject):
        registry.add_action(module.SPEC)
