"""Inbound keys (auth.api_keys), exposure beyond loopback, and keys never leaving in the clear."""

from __future__ import annotations

import subprocess
import sys

import anthropic
import pytest

from tests.conftest import RULES, user_message

KEYED = 'auth: {{api_keys: ["sk-router-0123456789abcdef"]}}\n' + RULES


async def test_requests_without_a_valid_key_get_401_in_the_clients_protocol(make_router, upstream, http, sdk):
    router = await make_router(KEYED)
    with pytest.raises(anthropic.AuthenticationError) as info:
        await sdk(router).messages.create(model="m", max_tokens=5, messages=user_message("hi"))
    assert (
        info.value.body["error"]["type"] == "authentication_error"
        and "auth.api_keys" in info.value.body["error"]["message"]
    )
    client = await http(router)
    for headers in ({}, {"x-api-key": "wrong-key-0123456789"}, {"Authorization": "Bearer nope"}):
        assert (
            await client.post(
                "/v1/messages", json={"model": "m", "max_tokens": 5, "messages": user_message("x")}, headers=headers
            )
        ).status == 401
    assert (await client.get("/_router/status")).status == 401
    assert (await client.get("/metrics")).status == 401
    assert upstream.seen == []


async def test_a_valid_key_passes_and_is_not_forwarded(make_router, upstream, http):
    client = await http(await make_router(KEYED))
    body = {"model": "m", "max_tokens": 5, "messages": user_message("x")}
    assert (
        await client.post("/v1/messages", json=body, headers={"x-api-key": "sk-router-0123456789abcdef"})
    ).status == 200
    assert (
        await client.post("/v1/messages", json=body, headers={"Authorization": "Bearer sk-router-0123456789abcdef"})
    ).status == 200
    assert (await client.get("/_router/status", headers={"x-api-key": "sk-router-0123456789abcdef"})).status == 200
    for seen in upstream.seen:
        lowered = {k.lower() for k in seen.headers}
        assert "x-api-key" not in lowered and "authorization" not in lowered


def test_short_keys_are_refused_by_the_schema(tmp_path):
    from router.config import parse_config
    from router.errors import RulesError
    from router.plugins import builtin_registry

    with pytest.raises(RulesError, match=r"auth.api_keys.0"):
        parse_config("auth: {api_keys: [short]}\nrules: []\n", "rules.yaml", builtin_registry())


@pytest.mark.parametrize("extra, refused", [([], True), (["--insecure"], False)])
def test_non_loopback_host_needs_keys_or_insecure(tmp_path, extra, refused):
    rules = tmp_path / "rules.yaml"
    rules.write_text("rules: []\n")
    args = [sys.executable, "-m", "router", "serve", "--rules", str(rules), "--host", "0.0.0.0", "--port", "0", *extra]
    if refused:
        result = subprocess.run(args, capture_output=True, text=True, timeout=30)
        assert result.returncode == 2 and "set auth.api_keys" in result.stderr
    else:
        from router.access import is_loopback as _is_loopback

        assert (
            not _is_loopback("0.0.0.0")
            and _is_loopback("127.0.0.2")
            and _is_loopback("::1")
            and _is_loopback("localhost")
        )


def test_keyed_rules_allow_a_non_loopback_host(tmp_path):
    rules = tmp_path / "rules.yaml"
    rules.write_text("auth: {api_keys: ['sk-router-0123456789abcdef']}\nrules: []\n")
    # --port 1 cannot be bound without privileges... as root it can; use an invalid host instead so nothing listens
    result = subprocess.run(
        [sys.executable, "-m", "router", "serve", "--rules", str(rules), "--host", "192.0.2.1", "--port", "0"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert "refusing to listen" not in result.stderr
    assert result.returncode == 1 and "cannot listen on 192.0.2.1" in result.stderr
