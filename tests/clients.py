"""Finding the real client CLIs that .ci/install-clients installs (skip locally, fail in CI)."""

from __future__ import annotations

import os
import shlex
from pathlib import Path

import pytest

TOOLS = Path(os.environ.get("GHOST_ROUTER_TOOLS", Path.home() / ".cache" / "ghost-router-tools"))


def client_binary(folder: str, name: str) -> Path:
    """The CLI NAME installed in TOOLS/FOLDER; skips the test (fails it under CI=true) if missing."""
    path = TOOLS / folder / "node_modules" / ".bin" / name
    if path.exists():
        return path
    message = f"{path} is not installed: run `bash .ci/install-clients` (needs npm) to enable this test"
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI must run the real clients: {message}")
    pytest.skip(message)


def split_line(line: str) -> tuple[dict[str, str], list[str]]:
    """A printed client line as a shell runs it: its leading NAME=value words (the environment),
    then the command."""
    words = shlex.split(line)
    env: dict[str, str] = {}
    while words and "=" in words[0] and words[0].split("=", 1)[0].isidentifier():
        name, value = words.pop(0).split("=", 1)
        env[name] = value
    return env, words
