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


# The child reads its own high-water mark (VmHWM) as it ends. Not wait4's ru_maxrss: Linux
# carries a forked child's RSS over exec, so after `make bench` ran four models in this process
# the child "peaked" at this process's 2.9 GiB whatever it did.
CHILD = """
import sys
from pathlib import Path
from parity.cli import main
try:
    code = main(sys.argv[2:])
finally:
    with open("/proc/self/status", encoding="ascii") as status:
        hwm = next(line for line in status if line.startswith("VmHWM:"))
    Path(sys.argv[1]).write_text(hwm.split()[1])
sys.exit(code)
"""


def peak_rss_mib(model: Path, texts: Path, out: Path) -> float:
    """The peak RSS (VmHWM) of one `parity run --stream` child process, in MiB."""
    report = out.with_suffix(".hwm")
    command = [sys.executable, "-c", CHILD, str(report), "run", "--stream", "--quiet"]
    command += ["--no-diagnose", "--no-cache", "--model", str(model), "--texts", str(texts)]
    command += ["--out", str(out)]
    for spec in SPECS:
        command += ["--adapter", spec]
    # one torch thread: on 2 busy cores, torch's spinning threads made a 10^4 run 4x slower
    env = {"OMP_NUM_THREADS": "1", **os.environ, "HF_HUB_OFFLINE": "1"}
    env["TOKENIZERS_PARALLELISM"] = "false"
    code = subprocess.run(command, env=env, stdout=subprocess.DEVNULL, check=False).returncode
    if code not in (0, 1):
        raise SystemExit(f"parity run --stream exited {code}: {' '.join(command)}")
    return int(report.read_text()) / 1024  # VmHWM is in kB


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
