"""Peak RSS of `parity run --stream` at 10^4 and 10^5 texts (the tiny BPE model, two adapters):
memory must not grow with the file (goal: ratio <= 1.1)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

# strip=true differs from custom on the corpus's edge whitespace: the run has failing texts, so
# the kept-for-diagnosis texts (at most 256 a pair) are exercised too
SPECS = ["custom", "custom:strip=true"]
SIZES = (10_000, 100_000)


def write_texts(path: Path, n: int) -> None:
    from parity.texts import builtin_corpus

    corpus = builtin_corpus()
    with path.open("w", encoding="utf-8") as handle:
        for i in range(n):
            # short texts (the corpus's first 48 characters, edge whitespace kept) keep 10^5
            # texts through two adapters well inside three minutes on 2 cores
            text = f"{corpus[i % len(corpus)][:48]} #{i}"
            handle.write(json.dumps({"text": text}) + "\n")


def peak_rss_mib(model: Path, texts: Path, out: Path) -> float:
    """ru_maxrss of one `parity run --stream` child process, in MiB (Linux reports KiB)."""
    command = [sys.executable, "-m", "parity", "run", "--stream", "--quiet", "--no-diagnose"]
    command += ["--model", str(model), "--texts", str(texts), "--out", str(out)]
    for spec in SPECS:
        command += ["--adapter", spec]
    # one torch thread: on 2 busy cores, torch's spinning threads made a 10^4 run 4x slower
    env = {"OMP_NUM_THREADS": "1", **os.environ, "HF_HUB_OFFLINE": "1"}
    env["TOKENIZERS_PARALLELISM"] = "false"
    child = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode not in (0, 1):
        raise SystemExit(f"parity run --stream exited {child.returncode}: {' '.join(command)}")
    return usage.ru_maxrss / 1024


def bench_stream_rss() -> float:
    """Print each size's peak RSS and the ratio; return the ratio."""
    from parity.tinymodels import build_tiny_model

    with tempfile.TemporaryDirectory(prefix="parity-rss-") as tmp:
        root = Path(tmp)
        model = build_tiny_model("bpe", root / "bpe", seed=0)
        peaks = []
        for n in SIZES:
            texts = root / f"texts-{n}.jsonl"
            write_texts(texts, n)
            peaks.append(peak_rss_mib(model, texts, root / f"out-{n}"))
            print(f"  parity run --stream, {n:>7} texts: peak RSS {peaks[-1]:7.1f} MiB")
    ratio = peaks[1] / peaks[0]
    print(f"streaming peak RSS 10^5 vs 10^4 texts: {ratio:.3f}  (goal <= 1.1)")
    return ratio


if __name__ == "__main__":
    bench_stream_rss()
