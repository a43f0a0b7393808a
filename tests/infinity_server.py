"""A real Infinity embedding server for the tests: started once per session on 127.0.0.1."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
INFINITY = ROOT / ".venv-servers" / "bin" / "infinity_emb"
START_DEADLINE = 240.0  # seconds; measured about 15 s on 2 shared cores
STOP_GRACE = 15.0
# sentence-transformers 6 module classes -> the names sentence-transformers < 4 imports
POOLING_FLAGS = {
    "cls": "pooling_mode_cls_token",
    "mean": "pooling_mode_mean_tokens",
    "max": "pooling_mode_max_tokens",
    "mean_sqrt_len_tokens": "pooling_mode_mean_sqrt_len_tokens",
    "weightedmean": "pooling_mode_weightedmean_tokens",
    "lasttoken": "pooling_mode_lasttoken",
}
JSON_FILES = (
    "modules.json",
    "sentence_bert_config.json",
    "tokenizer_config.json",
    "1_Pooling/config.json",
)


def _read(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def to_st3_format(src: Path, dst: Path) -> Path:
    """A copy of the sentence-transformers model `src` that sentence-transformers 3 (Infinity's)
    loads the same way: weights linked, the four config files rewritten.

    Checked against sentence-transformers 3.4.1 in .venv-servers: `models/Transformer.py` reads
    `max_seq_length`/`do_lower_case` from sentence_bert_config.json (6.x writes neither),
    modules.json types must import as `sentence_transformers.models.<Class>` (6.x writes
    `sentence_transformers.base.modules.transformer.Transformer`), `Pooling(**config)` takes
    `word_embedding_dimension` and `pooling_mode_*` flags (6.x: `embedding_dimension`,
    `pooling_mode: "mean"`), and transformers 4.57 does not know the tokenizer class
    `TokenizersBackend` that transformers 5 writes (PreTrainedTokenizerFast reads the same
    tokenizer.json)."""
    dst.mkdir(parents=True, exist_ok=True)
    for path in src.rglob("*"):
        target = dst / path.relative_to(src)
        if path.is_dir():
            target.mkdir(parents=True, exist_ok=True)
        elif path.relative_to(src).as_posix() not in JSON_FILES:
            target.parent.mkdir(parents=True, exist_ok=True)
            if not target.exists():
                target.symlink_to(path.resolve())
    modules = _read(src / "modules.json")
    for module in modules:
        module["type"] = "sentence_transformers.models." + module["type"].rsplit(".", 1)[-1]
    tokenizer = _read(src / "tokenizer_config.json")
    for key in ("backend", "is_local", "local_files_only"):
        tokenizer.pop(key, None)
    if tokenizer.get("tokenizer_class") == "TokenizersBackend":
        tokenizer["tokenizer_class"] = "PreTrainedTokenizerFast"
    bert = _read(src / "sentence_bert_config.json")
    max_length = bert.get("max_seq_length", tokenizer.get("model_max_length"))
    bert = {"max_seq_length": max_length, "do_lower_case": bert.get("do_lower_case", False)}
    pooling = _read(src / "1_Pooling" / "config.json")
    if isinstance(pooling.get("pooling_mode"), str):
        mode = pooling.pop("pooling_mode")
        pooling = {
            "word_embedding_dimension": pooling.pop("embedding_dimension"),
            **{flag: name == mode for name, flag in POOLING_FLAGS.items()},
            **pooling,
        }
    for name, content in zip(JSON_FILES, (modules, bert, tokenizer, pooling), strict=True):
        (dst / name).parent.mkdir(parents=True, exist_ok=True)
        (dst / name).write_text(json.dumps(content, indent=2))
    return dst


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class InfinityServer:
    """A running Infinity process: its endpoint, the served model names and its log."""

    base: str
    process: subprocess.Popen[bytes]
    log: Path
    start_seconds: float

    @property
    def embeddings_url(self) -> str:
        return self.base + "/embeddings"

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


def _environment(home: Path) -> dict[str, str]:
    """Offline and silent: no hub, no telemetry (infinity_emb/telemetry.py sends to PostHog
    unless DO_NOT_TRACK=1 or INFINITY_ANONYMOUS_USAGE_STATS=0), caches in the test's folder."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("INFINITY_")}
    env.update(
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        HF_HUB_DISABLE_TELEMETRY="1",
        DO_NOT_TRACK="1",
        INFINITY_ANONYMOUS_USAGE_STATS="0",
        INFINITY_HOME=str(home),  # its .infinity_cache goes here, not into the working tree
        HF_HOME=str(home / "hf"),
        TOKENIZERS_PARALLELISM="false",
    )
    return env


def start_infinity(models: dict[str, Path], workdir: Path) -> InfinityServer:
    """Start one Infinity process serving `models` (served name -> directory) on 127.0.0.1."""
    if not INFINITY.is_file():
        pytest.fail(f"{INFINITY} is missing: run `make servers` to build .venv-servers/")
    port = free_port()
    command = [str(INFINITY), "v2", "--host", "127.0.0.1", "--port", str(port)]
    for name, path in models.items():
        command += ["--model-id", str(path), "--served-model-name", name]
    command += ["--engine", "torch", "--device", "cpu", "--dtype", "float32", "--batch-size", "8"]
    command += ["--no-model-warmup", "--no-bettertransformer", "--redirect-slash", ""]
    log = workdir / "infinity.log"
    started = time.perf_counter()
    with log.open("wb") as sink:
        process = subprocess.Popen(
            command, stdout=sink, stderr=subprocess.STDOUT, env=_environment(workdir), cwd=workdir
        )
    server = InfinityServer(f"http://127.0.0.1:{port}", process, log, 0.0)
    _wait_healthy(server, START_DEADLINE)
    server.start_seconds = time.perf_counter() - started
    return server


def _wait_healthy(server: InfinityServer, deadline: float) -> None:
    import httpx

    until = time.monotonic() + deadline
    while time.monotonic() < until:
        if server.process.poll() is not None:
            pytest.fail(
                f"Infinity exited with {server.process.returncode} before it was ready; "
                f"log tail:\n{server.log_tail()}"
            )
        try:
            if httpx.get(server.base + "/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    stop(server.process)
    pytest.fail(f"Infinity was not healthy within {deadline:g} s; log tail:\n{server.log_tail()}")


def stop(process: subprocess.Popen[bytes]) -> None:
    """Stop our own process by its PID: terminate, then kill after a grace period."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=STOP_GRACE)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=STOP_GRACE)


@pytest.fixture(scope="session")
def infinity(
    tmp_path_factory: pytest.TempPathFactory, minilm: Path, bpe_model: Path
) -> Iterator[InfinityServer]:
    """Infinity serving the bundled MiniLM as "minilm" and the tiny byte-level BPE as "bpe"."""
    from sentence_transformers import SentenceTransformer

    root = tmp_path_factory.mktemp("infinity")
    # the tiny model as sentence-transformers 6 saves it: the format Infinity cannot read
    SentenceTransformer(str(bpe_model), local_files_only=True).save(str(root / "bpe-st6"))
    models = {
        "minilm": to_st3_format(minilm, root / "minilm"),
        "bpe": to_st3_format(root / "bpe-st6", root / "bpe"),
    }
    server = start_infinity(models, root)
    try:
        yield server
    finally:
        stop(server.process)
        shutil.rmtree(root / ".infinity_cache", ignore_errors=True)
