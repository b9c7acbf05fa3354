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
    # as written, or followed by `|| exit $?` (set -e does not stop on a failure inside an && list)
    assert block[1] in ci or f"{block[1]} || exit $?" in ci


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


def test_the_plugin_guides_interceptor_imports_one_module_is_short_and_works(tmp_path):
    import ast
    import asyncio

    from multidict import CIMultiDict, CIMultiDictProxy

    from router.errors import RouterError
    from router.plugins import load_plugins
    from router.protocols.base import new_request

    doc = (ROOT / "docs" / "plugins.md").read_text()
    example = doc.split("## An interceptor", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    assert len(example.strip().splitlines()) < 25
    imported = {n.module for n in ast.walk(ast.parse(example)) if isinstance(n, ast.ImportFrom)}
    assert {m for m in imported if m.startswith("router")} == {"router.api"}
    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "maintenance.py").write_text(example)
    plugins = load_plugins([tmp_path / "plugins"], entry_points=False)
    assert plugins.loaded == ["builtin", "maintenance"], plugins.errors
    registry, _ = plugins.registry()
    protocol, kind = registry.protocol_for("POST", "/v1/messages")
    request = new_request(
        "POST", "/v1/messages", "", "/v1/messages", CIMultiDictProxy(CIMultiDict()), b"{}", protocol, kind
    )
    flag = tmp_path / "MAINTENANCE"
    plugins.manager.get_plugin("maintenance").FLAG = flag
    assert asyncio.run(plugins.first("intercept_request", request=request)) is None
    flag.touch()
    with pytest.raises(RouterError) as raised:
        asyncio.run(plugins.first("intercept_request", request=request))
    assert raised.value.status == 529


def test_readmes_sample_output_is_the_real_banner(capsys):
    from router.cli import _banner
    from router.config import Overrides, load_config
    from router.plugins import load_plugins
    from router.upstream.probe import Found

    plugins = load_plugins()
    registry, rules = plugins.registry()
    config = load_config(None, registry, Overrides(upstream_url="http://127.0.0.1:8080", model="qwen2.5-coder"), rules)
    ready = {"local": [Found("http://127.0.0.1:8080", True, context=65536, slots=1)]}  # a llama-server -c 65536
    _banner("http://127.0.0.1:9090", config, ready, plugins.loaded)
    readme = (ROOT / "README.md").read_text()
    sample = readme.split("$ ghost-router serve --upstream http://127.0.0.1:8080 --model qwen2.5-coder\n", 1)[1].split(
        "```", 1
    )[0]
    assert sample == capsys.readouterr().out


def test_the_claude_code_guide_shows_the_line_serve_prints():
    from router import client_line

    guide = (ROOT / "docs" / "clients" / "claude-code.md").read_text()
    line = client_line.claude_code("http://127.0.0.1:9090", "your-model", 65536)
    assert f"\n{line}\n" in guide
    for setting in line.split(" claude ")[0].split()[2:] + ["--permission-mode default"]:
        assert f"| `{setting.split('=')[0]}" in guide, f"docs/clients/claude-code.md explains {setting}"


@pytest.mark.parametrize(
    ("plugin", "guide"), [("codex", "codex.md"), ("gemini", "gemini-cli.md"), ("opencode", "opencode.md")]
)
def test_each_plugin_clients_guide_shows_the_line_serve_prints(plugin, guide):
    from router import client_line

    text = (ROOT / "docs" / "clients" / guide).read_text()
    context = None if plugin == "gemini" else 65536
    line = client_line.PLUGIN_CLIENTS[plugin]("http://127.0.0.1:9090", "your-model", context)
    assert f"\n{line}\n" in text, f"docs/clients/{guide} shows the line `serve` prints"
