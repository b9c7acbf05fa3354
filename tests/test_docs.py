"""Docs are part of the product: every rules-file field is documented; README and CI agree."""

from __future__ import annotations

from pathlib import Path

import pytest

from router.plugins import builtin_registry
from router.rules.schema import UPSTREAM, build_schema

ROOT = Path(__file__).parent.parent
RULES_DOC = (ROOT / "docs" / "rules.md").read_text()


def field_names():
    registry = builtin_registry()
    schema = build_schema(registry)
    names = set(schema["properties"]) | set(UPSTREAM["properties"])
    names |= set(schema["properties"]["limits"]["properties"])
    rule = schema["properties"]["rules"]["items"]
    names |= set(rule["properties"])
    names |= set(registry.matchers)
    for name, spec in registry.actions.items():
        names.add(name)
        names |= set(spec.schema.get("properties", {}))
    return sorted(names)


@pytest.mark.parametrize("name", field_names())
def test_every_rules_field_is_documented(name):
    assert f"`{name}`" in RULES_DOC, f"docs/rules.md does not document `{name}`"


def test_readme_starts_with_the_run_and_test_commands_and_ci_runs_the_test_one():
    readme = (ROOT / "README.md").read_text().splitlines()
    block = readme[readme.index("```sh") + 1 : readme.index("```sh") + 3]
    assert readme.index("```sh") <= 3
    assert block[0].endswith("ghost-router serve")
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert block[1] in ci


def hook_heading(hook) -> str:
    import inspect

    return f"### {hook.__name__}({', '.join(inspect.signature(hook).parameters)})"


def hook_names():
    from router.hookspecs import HOOKS

    return [h.__name__ for h in HOOKS]


@pytest.mark.parametrize("name", hook_names())
def test_every_hook_is_documented_under_its_signature_and_tested(name):
    import router.hookspecs as hookspecs

    hook = getattr(hookspecs, name)
    doc = (ROOT / "docs" / "plugins.md").read_text()
    assert hook_heading(hook) in doc.splitlines(), f"docs/plugins.md has no heading `{hook_heading(hook)}`"
    section = doc.split(hook_heading(hook), 1)[1].split("\n### ", 1)[0]
    assert "```python" in section, f"the {name} section has no example"
    tests = (ROOT / "tests" / "test_plugins.py").read_text()
    assert f"def test_hook_{name}(" in tests, f"tests/test_plugins.py has no test_hook_{name}"


def test_every_hookspec_is_in_the_hooks_tuple():
    import router.hookspecs as hookspecs

    marked = {name for name in dir(hookspecs) if hasattr(getattr(hookspecs, name), "ghost_router_spec")}
    assert marked == set(hook_names())
