"""The rules file: JSON Schema validation with one-line errors naming file, line, rule and field."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from router.config import EMBEDDED_SOURCE, Overrides, load_config, parse_config
from router.errors import RulesError
from router.plugins import builtin_registry

HEAD = """\
version: 1
upstreams:
  local: {url: "http://127.0.0.1:8080"}
rules:
"""


def load(text: str):
    return parse_config(HEAD + textwrap.dedent(text), "rules.yaml", builtin_registry())


def error_of(text: str) -> str:
    with pytest.raises(RulesError) as info:
        load(text)
    message = str(info.value)
    assert "\n" not in message
    return message


INVALID = [
    (  # unknown action
        """\
        - name: probe
          match: {method: HEAD}
          action: {fak: {status: 200}}
        """,
        [
            "rules.yaml:7:",
            "rule #1 'probe'",
            "action.fak",
            "unknown action 'fak'",
            "allowed: estimate, fake, forward, reject, rewrite",
        ],
    ),
    (  # bad glob
        """\
        - name: haiku
          match: {model: "claude-[haiku"}
          action: {fake: {text: OK}}
        """,
        ["rules.yaml:6:", "rule #1 'haiku'", "match.model", "bad glob", "never closed"],
    ),
    (  # missing upstream
        """\
        - name: probe
          match: {method: HEAD}
          action: {fake: {status: 200}}
        - name: main
          action: {forward: {upstream: lcoal}}
        """,
        ["rules.yaml:9:", "rule #2 'main'", "action.forward", "unknown upstream 'lcoal'", "defined upstreams: local"],
    ),
    (  # unknown matcher
        """\
        - name: x
          match: {modle: "a*"}
          action: {fake: {text: OK}}
        """,
        ["rule #1 'x'", "match.modle", "unknown matcher 'modle'", "allowed:", "model"],
    ),
    (  # wrong option type
        """\
        - name: x
          match: {stream: "yes"}
          action: {fake: {text: OK}}
        """,
        ["rule #1 'x'", "match.stream", "'yes' is not of type 'boolean'"],
    ),
    (  # bad range
        """\
        - name: x
          match: {tools: {min: 3, max: 1}}
          action: {fake: {text: OK}}
        """,
        ["rule #1 'x'", "match.tools", "min 3 is above max 1"],
    ),
    (  # bad priority
        """\
        - name: x
          action: {forward: {priority: urgent}}
        """,
        ["rule #1 'x'", "action.forward.priority", "'urgent' is not one of ['user', 'subagent', 'background']"],
    ),
    (  # two answers
        """\
        - name: x
          action: {fake: {text: OK}, forward: {}}
        """,
        ["rule #1 'x'", "action:", "a rule answers once"],
    ),
    (  # fake without an answer
        """\
        - name: x
          action: {fake: {stop_reason: end_turn}}
        """,
        ["rule #1 'x'", "action.fake", "say what to answer"],
    ),
    (  # bad regex
        """\
        - name: x
          match: {system_regex: "(unclosed"}
          action: {fake: {text: OK}}
        """,
        ["rule #1 'x'", "match.system_regex", "bad regular expression"],
    ),
    (  # missing action
        """\
        - name: x
          match: {}
        """,
        ["rule #1 'x'", "'action' is a required property"],
    ),
    (  # duplicate names
        """\
        - name: x
          action: {fake: {text: OK}}
        - name: x
          action: {fake: {text: OK}}
        """,
        ["rule #2 'x'", "duplicate rule name"],
    ),
    (  # unnamed rule is named by its position
        """\
        - action: {fake: {text: OK}}
        - match: {method: [GET, 5]}
          action: {fake: {text: OK}}
        """,
        ["rule #2:", "match.method", "expected a string or a list of strings"],
    ),
]


@pytest.mark.parametrize("text, words", INVALID)
def test_invalid_rules_name_the_rule_and_field(text, words):
    message = error_of(text)
    for word in words:
        assert word in message, message


def test_bad_yaml_gives_line_and_column():
    with pytest.raises(RulesError) as info:
        parse_config("rules:\n  - name: x\n    action: {fake: {text: OK}\n", "rules.yaml", builtin_registry())
    assert str(info.value).startswith("rules.yaml:4:1: invalid YAML:")


@pytest.mark.parametrize(
    "text, words",
    [
        (
            "upstreams:\n  local: {url: 'ftp://x'}\nrules: []\n",
            ["rules.yaml:2:", "upstreams.local.url", "http(s)://host:port"],
        ),
        (
            "upstreams:\n  local: {url: 'http://x', queue_timeout: soon}\nrules: []\n",
            ["upstreams.local.queue_timeout", "'soon' is not valid here", "'15m'"],
        ),
        (
            "upstreams:\n  local: {url: 'http://x', max_concurrency: 0}\nrules: []\n",
            ["upstreams.local.max_concurrency", "less than the minimum of 1"],
        ),
        (
            "default_upstream: gpu\nupstreams:\n  local: {url: 'http://x'}\nrules: []\n",
            ["rules.yaml:1:", "default_upstream", "unknown upstream 'gpu'"],
        ),
        ("rules: {}\n", ["rules.yaml:1:", "rules", "is not of type 'array'"]),
        ("- a\n- b\n", ["must be a mapping"]),
        (
            "upstreams:\n  local: {url: 'http://x', headers: {Authorization: 'Bearer ${GHOST_ROUTER_TEST_UNSET}'}}\nrules: []\n",
            ["GHOST_ROUTER_TEST_UNSET is not set"],
        ),
    ],
)
def test_top_level_errors(text, words):
    with pytest.raises(RulesError) as info:
        parse_config(text, "rules.yaml", builtin_registry())
    for word in words:
        assert word in str(info.value), str(info.value)


def test_a_valid_file_compiles_in_order_with_defaults():
    config = load(
        """\
        - name: probe
          match: {method: HEAD}
          action: {fake: {status: 200}}
        - name: edit-only
          match: {model: "x*"}
          action: {rewrite: {model: local-model}}
        """
    )
    assert [r.name for r in config.table.rules] == ["probe", "edit-only"]
    assert [n for n, _ in config.table.rules[1].actions] == ["rewrite", "forward"], (
        "edits alone forward to the default upstream"
    )
    assert config.upstreams["local"].queue_timeout == 900
    assert config.max_body == 64 * 1024 * 1024
    assert config.table.rules[1].line == 8


def test_upstream_header_values_expand_environment_variables(monkeypatch):
    monkeypatch.setenv("GHOST_ROUTER_TEST_KEY", "secret")
    config = parse_config(
        "upstreams:\n  local: {url: 'http://x:1/', headers: {Authorization: 'Bearer ${GHOST_ROUTER_TEST_KEY}'}}\nrules: []\n",
        "rules.yaml",
        builtin_registry(),
    )
    assert config.upstreams["local"].headers == (("Authorization", "Bearer secret"),)
    assert config.upstreams["local"].url == "http://x:1"


def test_embedded_default_and_shipped_rules_yaml_are_the_same_valid_table(tmp_path):
    from pathlib import Path

    embedded = load_config(None, builtin_registry())
    assert embedded.source == EMBEDDED_SOURCE
    top_level = Path(__file__).parent.parent / "rules.yaml"
    assert top_level.read_text() == (Path(__file__).parent.parent / "router" / "default_rules.yaml").read_text()
    assert [r.name for r in load_config(top_level, builtin_registry()).table.rules] == [
        r.name for r in embedded.table.rules
    ]


def test_upstream_override_replaces_the_default_upstream_url():
    config = load_config(None, builtin_registry(), Overrides(upstream_url="http://127.0.0.1:5555/", model="qwen"))
    assert config.upstreams[config.default_upstream].url == "http://127.0.0.1:5555"
    assert config.upstreams[config.default_upstream].model == "qwen"


BROKEN_FILES = {
    "bad-yaml": ("rules:\n  - name: [unclosed\n", ["invalid YAML"]),
    "unknown-action": (HEAD + "  - name: p\n    action: {fak: {}}\n", ["rule #1 'p'", "action.fak", "unknown action"]),
    "bad-glob": (
        HEAD + "  - name: g\n    match: {path: '/v1/[x'}\n    action: {fake: {text: a}}\n",
        ["rule #1 'g'", "match.path", "bad glob"],
    ),
    "missing-upstream": (
        HEAD + "  - name: m\n    action: {forward: {upstream: gpu}}\n",
        ["rule #1 'm'", "action.forward", "unknown upstream 'gpu'"],
    ),
}


@pytest.mark.parametrize("case", sorted(BROKEN_FILES))
def test_serve_refuses_to_start_with_one_line_naming_rule_and_field(tmp_path, case):
    text, words = BROKEN_FILES[case]
    path = tmp_path / "rules.yaml"
    path.write_text(text)
    result = subprocess.run(
        [sys.executable, "-m", "router", "serve", "--rules", str(path), "--port", "0"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"ghost-router: {path}:")
    for word in words:
        assert word in lines[0]


def test_serve_reports_a_missing_rules_file(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "router", "serve", "--rules", str(tmp_path / "nope.yaml")],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2 and "cannot read rules file" in result.stderr
