"""Plugins: every hook, drop-in plugin files, entry points, the allowlist, broken plugins, reload."""

from __future__ import annotations

import asyncio
import textwrap
import time

import pytest

from router.app import STATE, build_app
from router.config import load_config, parse_config
from router.errors import RulesError
from router.plugins import load_plugins
from tests.conftest import user_message

SHOUT_PLUGIN = '''
"""A drop-in plugin: a `user_words` matcher and a `shout` action, no change to router/."""
from router.api import ActionSpec, MatcherSpec, Reply, hookimpl


def user_words(value):
    low, high = value.get("min", 0), value.get("max", 10**9)
    if low > high:
        raise ValueError(f"min {low} is above max {high}")
    return lambda request: low <= len(request.view.user.split()) <= high


class Shout:
    def __init__(self, options):
        self.suffix = options.get("suffix", "!")

    async def run(self, request, edits, services):
        return request.protocol.reply(request, Reply(request.view.user.upper() + self.suffix))


@hookimpl
def register_matchers(register):
    register(MatcherSpec("user_words", {"type": "object", "properties": {"min": {"type": "integer"}, "max": {"type": "integer"}}, "additionalProperties": False}, user_words))


@hookimpl
def register_actions(register):
    register(ActionSpec("shout", {"type": "object", "properties": {"suffix": {"type": "string", "maxLength": 3}}, "additionalProperties": False}, lambda options, context: Shout(options)))
'''

RULES = """
upstreams:
  local: {{url: "{upstream}"}}
rules:
  - name: short-shout
    match: {{user_words: {{max: 3}}}}
    action: {{shout: {{suffix: "!!"}}}}
  - name: main
    action: {{forward: {{}}}}
"""


def write_plugin(folder, name: str, text: str) -> None:
    folder.mkdir(exist_ok=True)
    (folder / f"{name}.py").write_text(textwrap.dedent(text))


async def router_with(aiohttp_server, folder, rules_text: str, upstream, **kwargs):
    plugins = load_plugins([folder], entry_points=False)
    registry, plugin_rules = plugins.registry()
    config = parse_config(rules_text.format(upstream=upstream.url), "rules.yaml", registry, plugin_rules=plugin_rules)
    return await aiohttp_server(
        build_app(config, registry, plugins=plugins, plugin_rules=plugin_rules, **kwargs)
    ), plugins


async def test_hook_register_matchers(aiohttp_server, tmp_path, upstream, sdk):
    write_plugin(tmp_path / "plugins", "shout", SHOUT_PLUGIN)
    router, plugins = await router_with(aiohttp_server, tmp_path / "plugins", RULES, upstream)
    assert plugins.loaded == ["builtin", "shout"] and plugins.errors == []
    client = sdk(router)
    long = await client.messages.create(model="m", max_tokens=5, messages=user_message("this one is long enough"))
    assert long.content[0].text == "tok0 tok1 tok2 ", "four words: the matcher does not hold, forwarded"


async def test_hook_register_actions(aiohttp_server, tmp_path, upstream, sdk):
    write_plugin(tmp_path / "plugins", "shout", SHOUT_PLUGIN)
    router, _ = await router_with(aiohttp_server, tmp_path / "plugins", RULES, upstream)
    client = sdk(router)
    message = await client.messages.create(model="m", max_tokens=5, messages=user_message("hi there"))
    assert message.content[0].text == "HI THERE!!"
    async with client.messages.stream(model="m", max_tokens=5, messages=user_message("stream me")) as stream:
        assert await stream.get_final_text() == "STREAM ME!!"
    assert upstream.seen == []


def test_plugin_options_are_validated_by_the_extended_schema(tmp_path):
    write_plugin(tmp_path / "plugins", "shout", SHOUT_PLUGIN)
    registry, _ = load_plugins([tmp_path / "plugins"], entry_points=False).registry()
    bad_action = RULES.replace('suffix: "!!"', 'suffix: "!!!!!"').format(upstream="http://x")
    with pytest.raises(RulesError, match=r"rule #1 'short-shout': action.shout.suffix: '!!!!!' is too long"):
        parse_config(bad_action, "rules.yaml", registry)
    bad_matcher = RULES.replace("{max: 3}", "{max: 1, min: 3}").format(upstream="http://x")
    with pytest.raises(RulesError, match=r"rule #1 'short-shout': match.user_words: min 3 is above max 1"):
        parse_config(bad_matcher, "rules.yaml", registry)
    unknown = RULES.replace("shout:", "shuot:").format(upstream="http://x")
    with pytest.raises(
        RulesError, match=r"unknown action 'shuot'; allowed: estimate, fake, forward, reject, rewrite, shout"
    ):
        parse_config(unknown, "rules.yaml", registry)


ECHO_PROTOCOL = """
from router.api import Answer, BadRequest, Protocol, RequestView, dumps_bytes, hookimpl


class Echo(Protocol):
    name = "echo"

    def kind_of(self, method, path):
        return "say" if (method, path) == ("POST", "/echo/say") else None

    def parse(self, kind, body, headers):
        if not isinstance(body, dict) or not isinstance(body.get("text"), str):
            raise BadRequest("text: expected a string")
        return RequestView(model=body.get("voice"), user=body["text"]), "echo-cli"

    def error_answer(self, error, request_id):
        return Answer.json(dumps_bytes({"oops": error.message}), error.status)

    def reply(self, request, reply):
        return Answer.json(dumps_bytes({"said": reply.text}))


@hookimpl
def register_protocols(register):
    register(Echo())
"""


async def test_hook_register_protocols(aiohttp_server, tmp_path, upstream, http):
    write_plugin(tmp_path / "plugins", "echo", ECHO_PROTOCOL)
    rules = """
upstreams:
  local: {{url: "{upstream}"}}
rules:
  - name: echo-hi
    match: {{client: echo-cli, user: hi}}
    action: {{fake: {{text: "hello back"}}}}
"""
    router, _ = await router_with(aiohttp_server, tmp_path / "plugins", rules, upstream)
    client = await http(router)
    assert await (await client.post("/echo/say", json={"text": "hi"})).json() == {"said": "hello back"}
    bad = await client.post("/echo/say", json={"text": 5})
    assert bad.status == 400 and await bad.json() == {"oops": "text: expected a string"}
    missing = await client.post("/echo/say", json={"text": "bye"})
    assert missing.status == 404 and "no rule" in (await missing.json())["oops"]


RULES_PLUGIN = '''
from router.api import hookimpl

@hookimpl
def register_rules(register):
    register("""
- name: plugin-title
  match: {system: "You are a title generator"}
  action: {fake: {title_from_prompt: true}}
""")
'''


async def test_hook_register_rules(aiohttp_server, tmp_path, upstream, sdk):
    write_plugin(tmp_path / "plugins", "titles", RULES_PLUGIN)
    router, _ = await router_with(
        aiohttp_server,
        tmp_path / "plugins",
        'upstreams:\n  local: {{url: "{upstream}"}}\nrules:\n  - {{name: main, action: {{forward: {{}}}}}}\n',
        upstream,
    )
    assert [r.name for r in router.app[STATE].config.table.rules] == ["plugin-title", "main"]
    client = sdk(router)
    message = await client.messages.create(
        model="m",
        max_tokens=5,
        system="You are a title generator. You output ONLY a thread title.",
        messages=user_message("debug the flaky CI job"),
    )
    assert message.content[0].text == "Debug the flaky CI job"
    registry, rules = load_plugins([tmp_path / "plugins"], entry_points=False).registry()
    off = parse_config("plugin_rules: false\nrules: []\n", "rules.yaml", registry, plugin_rules=rules)
    assert off.table.rules == ()
    with pytest.raises(RulesError, match=r"plugin titles rules:1: rule #1 'bad': action.fake.text"):
        parse_config(
            "rules: []\n", "rules.yaml", registry, plugin_rules=[("titles", "- {name: bad, action: {fake: {text: 5}}}")]
        )


INTERCEPT_PLUGIN = """
from router.api import Answer, Overloaded, dumps_bytes, hookimpl

@hookimpl
async def intercept_request(request):
    if request.headers.get("x-maintenance") == "1":
        return Answer.json(dumps_bytes({"type": "error", "error": {"type": "overloaded_error", "message": "maintenance"}}), 529)
    if request.headers.get("x-maintenance") == "crash":
        raise ValueError("plugin bug")
    return None
"""


async def test_hook_intercept_request(aiohttp_server, tmp_path, upstream, http, caplog):
    write_plugin(tmp_path / "plugins", "shout", SHOUT_PLUGIN)
    write_plugin(tmp_path / "plugins", "maintenance", INTERCEPT_PLUGIN)
    router, _ = await router_with(aiohttp_server, tmp_path / "plugins", RULES, upstream)
    client = await http(router)
    body = {"model": "m", "max_tokens": 5, "messages": user_message("a long request here")}
    blocked = await client.post("/v1/messages", json=body, headers={"x-maintenance": "1"})
    assert blocked.status == 529 and (await blocked.json())["error"]["message"] == "maintenance"
    assert (await client.post("/v1/messages", json=body)).status == 200
    assert any("rule=plugin:maintenance action=intercept status=529" in r.getMessage() for r in caplog.records)
    crashed = await client.post("/v1/messages", json=body, headers={"x-maintenance": "crash"})
    assert crashed.status == 500 and crashed.content_type == "application/json", (
        "a broken plugin answers in the protocol"
    )
    error = (await crashed.json())["error"]
    assert (
        error["type"] == "api_error"
        and "plugin maintenance failed in intercept_request (ValueError: plugin bug)" in error["message"]
    )
    assert any(
        "plugin maintenance failed in intercept_request: ValueError: plugin bug" in r.getMessage()
        for r in caplog.records
    )


BEFORE_FORWARD_PLUGIN = """
from router.api import hookimpl

@hookimpl
def before_forward(edits, upstream):  # any subset of the hook's arguments
    edits.set("metadata", {"routed_to": upstream})
    edits.set_header("x-routed-by", "plugin")
"""


async def test_hook_before_forward(aiohttp_server, tmp_path, upstream, sdk):
    write_plugin(tmp_path / "plugins", "shout", SHOUT_PLUGIN)
    write_plugin(tmp_path / "plugins", "tagger", BEFORE_FORWARD_PLUGIN)
    router, _ = await router_with(aiohttp_server, tmp_path / "plugins", RULES, upstream)
    await sdk(router).messages.create(model="m", max_tokens=5, messages=user_message("four words right here"))
    assert upstream.seen[0].body["metadata"] == {"routed_to": "local"}
    assert upstream.seen[0].headers["x-routed-by"] == "plugin"
    assert upstream.seen[0].body["messages"] == user_message("four words right here"), "the rest as it arrived"


OBSERVER_PLUGIN = """
from router.api import hookimpl

SEEN = []

@hookimpl
def exchange_finished(request, outcome):
    SEEN.append((request.id, outcome.rule, outcome.status))


class Broken:
    @hookimpl
    def exchange_finished(self, outcome):  # a subset of the arguments is fine
        raise RuntimeError("observer bug")
"""


async def test_hook_exchange_finished(aiohttp_server, tmp_path, upstream, http, caplog):
    write_plugin(tmp_path / "plugins", "shout", SHOUT_PLUGIN)
    write_plugin(tmp_path / "plugins", "observer", OBSERVER_PLUGIN)
    router, plugins = await router_with(aiohttp_server, tmp_path / "plugins", RULES, upstream)
    observer = plugins.manager.get_plugin("observer")
    plugins.manager.register(observer.Broken(), name="broken-observer")
    client = await http(router)
    assert (
        await client.post("/v1/messages", json={"model": "m", "max_tokens": 5, "messages": user_message("hi")})
    ).status == 200
    assert (await client.post("/v1/messages", data=b"{bad")).status == 400
    assert (
        await client.post(
            "/v1/messages", json={"model": "m", "max_tokens": 5, "messages": user_message("four words right here")}
        )
    ).status == 200
    dropped = await client.post(
        "/v1/messages",
        json={"model": "m", "max_tokens": 5, "stream": True, "messages": user_message("four words right here")},
        headers={"x-test-upstream": "hold=never"},
    )
    await dropped.content.readuntil(b"\n\n")
    dropped.close()
    for _ in range(300):
        if len(observer.SEEN) == 4:
            break
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.05)
    assert [(rule, status) for _, rule, status in observer.SEEN] == [
        ("short-shout", 200),
        ("-", 400),
        ("main", 200),
        ("main", 499),
    ]
    assert len({request_id for request_id, _, _ in observer.SEEN}) == 4, "exactly once per request"
    assert (
        sum(
            "plugin broken-observer failed in exchange_finished: RuntimeError: observer bug" in r.getMessage()
            for r in caplog.records
        )
        == 4
    )


ERROR_PLUGIN = """
from router.api import RouterError, hookimpl

@hookimpl
def handle_error(error):
    if error.status == 502:
        return RouterError(503, "the local model is starting, try again in a minute", "overloaded_error")
    return None
"""


async def test_hook_handle_error(aiohttp_server, tmp_path, http, upstream, closed_port):
    write_plugin(tmp_path / "plugins", "shout", SHOUT_PLUGIN)
    write_plugin(tmp_path / "plugins", "friendly", ERROR_PLUGIN)
    router, _ = await router_with(
        aiohttp_server, tmp_path / "plugins", RULES.replace("{upstream}", f"http://127.0.0.1:{closed_port}"), upstream
    )
    client = await http(router)
    response = await client.post(
        "/v1/messages", json={"model": "m", "max_tokens": 5, "messages": user_message("four words right here")}
    )
    assert response.status == 503
    assert (await response.json())["error"] == {
        "type": "overloaded_error",
        "message": "the local model is starting, try again in a minute",
    }
    bad = await client.post("/v1/messages", data=b"{bad")
    assert bad.status == 400, "other errors are left alone"


def test_broken_plugins_are_reported_with_file_and_error_and_left_out(tmp_path, caplog):
    folder = tmp_path / "plugins"
    write_plugin(folder, "shout", SHOUT_PLUGIN)
    write_plugin(folder, "syntax", "def broken(:\n")
    write_plugin(
        folder, "typo", "from router.api import hookimpl\n\n@hookimpl\ndef register_matcher(register):\n    pass\n"
    )
    write_plugin(folder, "_private", "raise SystemExit('never imported')\n")
    plugins = load_plugins([folder], entry_points=False)
    assert plugins.loaded == ["builtin", "shout"]
    assert any(e.startswith(f"plugin file {folder / 'syntax.py'}: SyntaxError") for e in plugins.errors)
    typo = next(e for e in plugins.errors if "typo.py" in e)
    assert "register_matcher" in typo and "known hooks: register_matchers" in typo
    assert "left out; the router goes on without it" in caplog.text


def test_allowlist_env_var(tmp_path, monkeypatch):
    folder = tmp_path / "plugins"
    write_plugin(folder, "shout", SHOUT_PLUGIN)
    write_plugin(folder, "echo", ECHO_PROTOCOL)
    monkeypatch.setenv("GHOST_ROUTER_PLUGINS", "echo")
    assert load_plugins([folder], entry_points=False).loaded == ["builtin", "echo"]
    monkeypatch.setenv("GHOST_ROUTER_PLUGINS", "none")
    assert load_plugins([folder], entry_points=False).loaded == ["builtin"]


def test_entry_point_plugins_load_from_installed_distributions(tmp_path, monkeypatch):
    site = tmp_path / "site"
    site.mkdir()
    (site / "shout_plugin.py").write_text(textwrap.dedent(SHOUT_PLUGIN))
    info = site / "ghost_router_shout-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: ghost-router-shout\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[ghost_router]\nshout = shout_plugin\n")
    monkeypatch.syspath_prepend(str(site))
    plugins = load_plugins()
    assert "shout" in plugins.loaded
    registry, _ = plugins.registry()
    assert "shout" in registry.actions and "user_words" in registry.matchers


async def test_plugin_files_hot_reload_and_a_broken_edit_keeps_the_last_good_set(
    aiohttp_server, tmp_path, upstream, sdk
):
    folder = tmp_path / "plugins"
    write_plugin(folder, "shout", SHOUT_PLUGIN)
    rules_path = tmp_path / "rules.yaml"
    rules_path.write_text(RULES.format(upstream=upstream.url))
    plugins = load_plugins([folder], entry_points=False)
    registry, plugin_rules = plugins.registry()
    config = load_config(str(rules_path), registry, plugin_rules=plugin_rules)
    router = await aiohttp_server(
        build_app(config, registry, plugins=plugins, rules_path=str(rules_path), plugin_dirs=[str(folder)])
    )
    state = router.app[STATE]
    client = sdk(router)

    async def answer() -> str:
        return (await client.messages.create(model="m", max_tokens=5, messages=user_message("hi"))).content[0].text

    async def until(predicate) -> None:
        deadline = time.monotonic() + 5
        while not predicate():
            assert time.monotonic() < deadline, state.last_load_error
            await asyncio.sleep(0.01)

    assert await answer() == "HI!!"
    write_plugin(folder, "shout", SHOUT_PLUGIN.replace("request.view.user.upper()", "request.view.user.title()"))
    await until(lambda: state.reloads == 1)
    assert await answer() == "Hi!!"
    write_plugin(folder, "shout", SHOUT_PLUGIN + "\nraise ImportError('half-saved file')\n")
    await until(lambda: state.last_load_error is not None)
    assert "shout.py: ImportError: half-saved file" in state.last_load_error
    assert await answer() == "Hi!!", "the last good plugin set keeps serving"
    write_plugin(folder, "shout", SHOUT_PLUGIN)
    await until(lambda: state.last_load_error is None)
    assert await answer() == "HI!!"
