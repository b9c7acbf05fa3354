"""A long first prefill with each real CLI and only the line `serve` prints for it: the upstream
sends nothing for 330 s before the first turn's first byte (past every CLI's own 300 s or 60 s
watchdog), and each turn must complete with every request sent once. The four run side by side,
each against its own router and upstream, so together they take one prefill's time."""

from __future__ import annotations

import asyncio

from tests.conftest import start_agent_upstream
from tests.test_claude_code_cli import claude_code_line_carries_a_330_s_prefill
from tests.test_codex import codex_line_carries_a_330_s_prefill
from tests.test_gemini import gemini_line_carries_a_330_s_prefill
from tests.test_opencode import opencode_line_carries_a_330_s_prefill


async def test_a_330_s_prefill_completes_for_each_client_with_only_its_printed_line(
    aiohttp_server, router_factory, tmp_path, closed_port
):
    fakes = [await start_agent_upstream(aiohttp_server) for _ in range(4)]
    folders = [tmp_path / name for name in ("claude", "codex", "gemini", "opencode")]
    for folder in folders:
        folder.mkdir()
    results = await asyncio.gather(
        claude_code_line_carries_a_330_s_prefill(aiohttp_server, fakes[0], folders[0]),
        codex_line_carries_a_330_s_prefill(router_factory, fakes[1], folders[1]),
        gemini_line_carries_a_330_s_prefill(router_factory, fakes[2], folders[2]),
        opencode_line_carries_a_330_s_prefill(router_factory, fakes[3], folders[3], closed_port),
        return_exceptions=True,
    )
    failed = [(folder.name, result) for folder, result in zip(folders, results, strict=True) if result is not None]
    for name, error in failed:
        if not isinstance(error, Exception):
            raise error  # a skip (a CLI not installed) or a cancellation
    assert not failed, "\n\n".join(f"{name}: {error!r}" for name, error in failed)
    assert not any(fake.violations for fake in fakes), [fake.violations for fake in fakes]
