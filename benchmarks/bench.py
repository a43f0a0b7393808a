"""`make bench`: `parity run` against the stacks it calls, an unchanged re-run from the embedding
cache, and (with --fuzz) the batch-first search speed.

Overhead = wall time of parity's run() with the four adapters on N texts, divided by the sum of
the four frameworks' own batched encode times on the same texts, all in this one process.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

SPECS = ["sentence-transformers", "custom", "bcembedding:pooling=mean", "langchain"]


def bench_texts(n: int) -> list[str]:
    from parity.texts import builtin_corpus

    corpus = builtin_corpus()
    return [f"{corpus[i % len(corpus)]} #{i}" for i in range(n)]


def native_encode_seconds(model: str, texts: list[str]) -> dict[str, float]:
    """Each framework called directly, as its users call it, timed around encode only."""
    from langchain_huggingface import HuggingFaceEmbeddings
    from sentence_transformers import SentenceTransformer

    from parity.adapters.bcembedding import quiet_embedding_model
    from parity.adapters.custom import CustomAdapter

    EmbeddingModel = quiet_embedding_model()

    timings = {}
    st = SentenceTransformer(model, device="cpu")
    started = time.perf_counter()
    st.encode(texts, batch_size=32, show_progress_bar=False)
    timings["sentence-transformers"] = time.perf_counter() - started
    custom = CustomAdapter(model)
    custom.load()
    started = time.perf_counter()
    custom.stages(texts)  # our encoder's own pipeline, without the adapter's validation
    timings["custom"] = time.perf_counter() - started
    bce = EmbeddingModel(model_name_or_path=model, pooler="mean", device="cpu")
    started = time.perf_counter()
    bce.encode(texts, enable_tqdm=False)
    timings["bcembedding"] = time.perf_counter() - started
    lc = HuggingFaceEmbeddings(model_name=model, model_kwargs={"device": "cpu"})
    started = time.perf_counter()
    lc.embed_documents(texts)
    timings["langchain"] = time.perf_counter() - started
    return timings


def bench_overhead(n: int) -> float:
    from parity.adapters import parse_specs
    from parity.modelinfo import bundled_model_path
    from parity.runner import run

    model = str(bundled_model_path())
    texts = bench_texts(n)
    native = native_encode_seconds(model, texts[:64])  # warm-up: imports, kernels
    native = native_encode_seconds(model, texts)
    started = time.perf_counter()
    result = run(parse_specs(SPECS), texts, model=model)
    wall = time.perf_counter() - started
    total = sum(native.values())
    print(f"texts: {n}")
    for name, seconds in native.items():
        print(f"  native {name:24s} {seconds:7.2f} s")
    print(f"  sum of native encodes          {total:7.2f} s")
    print(f"  parity run (4 adapters, load + embed + compare) {wall:7.2f} s")
    print(f"parity run vs the native encodes: {wall / total:.3f}  (goal <= 0.5)")
    assert len(result.comparison.pairs) == 6
    bench_rerun(model, texts)
    bench_ray(model, texts)
    return wall / total


def bench_rerun(model: str, texts: list[str]) -> None:
    """`parity run` as a user runs it (a new process: imports, the four adapters, diagnosis,
    the reports) against the same command again: remembered (parity.remember), and with --rerun
    (run again, every vector from the embedding cache)."""
    import json
    import subprocess
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        path = root / "texts.jsonl"
        path.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts), encoding="utf-8")
        command = [sys.executable, "-m", "parity", "run", "--model", model, "--texts", str(path)]
        command += ["--cache", str(root / "cache"), "--quiet"]
        for spec in SPECS:
            command += ["--adapter", spec]
        times = {}
        for name, extra in (("first", []), ("unchanged", []), ("rerun", ["--rerun"])):
            started = time.perf_counter()
            argv = [*command, "--out", str(root / name), *extra]
            done = subprocess.run(argv, check=False, stdout=subprocess.DEVNULL)
            times[name] = time.perf_counter() - started
            if done.returncode not in (0, 1):
                raise SystemExit(f"parity run exited {done.returncode}: {' '.join(command)}")
    print(f"  parity run, filling the cache  {times['first']:7.2f} s")
    print(f"  the same command again          {times['unchanged']:7.2f} s (remembered)")
    print(f"  again with --rerun              {times['rerun']:7.2f} s (vectors from the cache)")
    print(f"  --rerun vs the first: {times['rerun'] / times['first']:.3f}")
    print(
        f"unchanged re-run vs the first: {times['unchanged'] / times['first']:.3f}  (goal <= 0.1)"
    )


def bench_ray(model: str, texts: list[str]) -> None:
    """The Ray engine with a local 2-worker cluster against the local engine, same texts."""
    from parity.adapters import parse_specs
    from parity.distributed import RayEngine
    from parity.runner import run

    specs = parse_specs(["sentence-transformers", "custom"])
    started = time.perf_counter()
    local = run(specs, texts, model=model)
    local_s = time.perf_counter() - started
    with RayEngine(workers=2) as engine:
        started = time.perf_counter()
        remote = run(specs, texts, model=model, engine=engine)
        ray_s = time.perf_counter() - started
    same = [p.failures for p in local.comparison.pairs] == [
        p.failures for p in remote.comparison.pairs
    ]
    print(f"  local engine, 2 adapters        {local_s:7.2f} s")
    print(f"  Ray engine, 2 workers            {ray_s:7.2f} s (same verdicts: {same})")
    print(f"Ray (2 workers) vs local: {ray_s / local_s:.3f}  (report; ~1 expected on 2 cores)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--texts", type=int, default=1000)
    parser.add_argument("--skip-overhead", action="store_true")
    parser.add_argument("--fuzz", action="store_true", help="also time the batch-first search")
    args = parser.parse_args()
    if not args.skip_overhead:
        bench_overhead(args.texts)
    __import__("rss_bench").bench_stream_rss()  # `parity run --stream` peak RSS, 10^5 vs 10^4
    if args.fuzz:
        sys.path.insert(0, str(Path(__file__).parent))
        from fuzz_bench import bench_fuzz

        bench_fuzz()


if __name__ == "__main__":
    main()
