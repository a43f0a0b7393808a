"""The embedding cache: keyed by what decides a vector, whole shards only, bounded, and a
re-run that reads it gives the same verdict and figures."""

from __future__ import annotations

import json
import re
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest

from parity.cache import EmbeddingCache, cache_key, default_cache
from parity.cli import main
from parity.files import text_sha256


def _vectors(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, 8)).astype(np.float32)


def test_stored_vectors_come_back_by_text_hash_and_others_miss(tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path)
    hashes = [text_sha256(t) for t in ("a", "b", "c")]
    vectors = _vectors(3)
    cache.store("k1", hashes, vectors)
    found = cache.lookup("k1", [hashes[2], text_sha256("zzz"), hashes[0]])
    assert sorted(found) == sorted([hashes[0], hashes[2]])
    np.testing.assert_array_equal(found[hashes[2]], vectors[2])
    assert cache.lookup("another-key", hashes) == {}


def test_a_damaged_shard_is_a_miss_and_is_removed(tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path)
    hashes = [text_sha256("a")]
    cache.store("k", hashes, _vectors(1))
    (shard,) = (tmp_path / "v1" / "k").glob("*.npz")
    shard.write_bytes(shard.read_bytes()[:40])  # torn, as a crash mid-copy would leave it
    assert cache.lookup("k", hashes) == {}
    assert not shard.exists()


def test_no_temp_file_is_ever_read_as_an_entry(tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path)
    folder = tmp_path / "v1" / "k"
    folder.mkdir(parents=True)
    (folder / ".abc.npz.tmp123").write_bytes(b"half")  # write_atomic's temp name pattern
    assert cache.lookup("k", [text_sha256("a")]) == {}
    assert cache.info().shards == 0


def test_past_its_bound_the_least_recently_used_shards_go(tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path, max_bytes=10**9)
    for i in range(3):
        cache.store("k", [text_sha256(f"t{i}")], _vectors(1, i))
    shards = sorted((tmp_path / "v1" / "k").glob("*.npz"), key=lambda p: p.stat().st_mtime_ns)
    one = shards[0].stat().st_size
    cache.lookup("k", [text_sha256("t0")])  # t0 used again: now the most recent
    cache.max_bytes = 2 * one
    assert cache.evict() == 1
    left = cache.lookup("k", [text_sha256(f"t{i}") for i in range(3)])
    assert text_sha256("t0") in left and len(left) == 2


def test_concurrent_writers_leave_only_whole_shards(tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path)
    texts = [f"text {i}" for i in range(40)]

    def write(part: int) -> None:
        for i in range(part, 40, 4):
            EmbeddingCache(tmp_path).store("k", [text_sha256(texts[i])], _vectors(1, i))

    threads = [threading.Thread(target=write, args=(p,)) for p in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    found = cache.lookup("k", [text_sha256(t) for t in texts])
    assert len(found) == 40
    np.testing.assert_array_equal(found[text_sha256(texts[7])], _vectors(1, 7)[0])


def test_the_key_changes_with_settings_model_files_and_code(tmp_path: Path) -> None:
    model = tmp_path / "m"
    model.mkdir()
    (model / "config.json").write_text("{}")
    base = cache_key({"adapter": "custom", "pooling": "mean", "label": "x"}, model, "C 1")
    assert base == cache_key({"adapter": "custom", "pooling": "mean", "label": "y"}, model, "C 1")
    assert base != cache_key({"adapter": "custom", "pooling": "cls", "label": "x"}, model, "C 1")
    assert base != cache_key({"adapter": "custom", "pooling": "mean", "label": "x"}, model, "C 2")
    (model / "config.json").write_text('{"changed": 1}')
    assert base != cache_key({"adapter": "custom", "pooling": "mean", "label": "x"}, model, "C 1")


def test_default_cache_follows_flags_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PARITY_CACHE", "off")
    assert default_cache(None, False) is None
    assert default_cache("/tmp/c", False) is not None  # --cache wins over the environment
    assert default_cache("/tmp/c", True) is None
    monkeypatch.setenv("PARITY_CACHE", "/tmp/elsewhere")
    cache = default_cache(None, False)
    assert cache is not None and cache.root == Path("/tmp/elsewhere")
    monkeypatch.delenv("PARITY_CACHE")
    cache = default_cache(None, False)
    assert cache is not None and cache.root == Path(".parity-cache")


def _run(model: Path, cache: Path, out: Path, *adapters: str, rerun: bool = False) -> dict:
    args = [
        "run",
        "--model",
        str(model),
        "--no-retrieval",
        "--cache",
        str(cache),
        "--out",
        str(out),
    ]
    for spec in adapters:
        args += ["--adapter", spec]
    main([*args, "--rerun"] if rerun else args)
    return json.loads((out / "summary.json").read_text())


@pytest.mark.slow
def test_a_rerun_reads_the_cache_and_reports_the_same_figures(
    bpe_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cache = tmp_path / "cache"
    specs = ("custom", "custom:strip=true", "sentence-transformers")
    first = _run(bpe_model, cache, tmp_path / "one", *specs)
    assert "from the cache" not in capsys.readouterr().err
    second = _run(bpe_model, cache, tmp_path / "two", *specs, rerun=True)
    err = capsys.readouterr().err
    assert err.count("120 of 120 texts from the cache") == 3
    assert first["passed"] is False and second["passed"] is False
    for one, two in zip(first["pairs"], second["pairs"], strict=True):
        assert one["failures"] == two["failures"]
        assert one["stats"] == two["stats"]
        assert [c["cause"] for c in one["causes"]] == [c["cause"] for c in two["causes"]]
    main(["cache", "info", "--cache", str(cache)])
    info = capsys.readouterr().out
    assert "adapters/configurations: 3" in info
    assert "remembered runs: 1" in info  # the first run's; the --rerun replaced it
    shards, vectors = (int(n) for n in re.findall(r"shards: (\d+), vectors: (\d+)", info)[0])
    assert shards > 3 and vectors > 360  # 120 a side, and the vectors diagnosis's probes made
    main(["cache", "clear", "--cache", str(cache)])
    assert f"removed {shards + 1} cached shards and remembered runs" in capsys.readouterr().out
    assert not list(cache.rglob("*.npz")) and not list(cache.rglob("run.zip"))


@pytest.mark.slow
def test_changed_model_files_miss_the_cache(
    bpe_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = tmp_path / "model"
    shutil.copytree(bpe_model, model)
    cache = tmp_path / "cache"
    _run(model, cache, tmp_path / "one", "custom", "sentence-transformers")
    capsys.readouterr()
    tokenizer_config = model / "tokenizer_config.json"
    tokenizer_config.write_text(tokenizer_config.read_text() + "\n")
    _run(model, cache, tmp_path / "two", "custom", "sentence-transformers")
    assert "from the cache" not in capsys.readouterr().err


def test_the_gate_embeds_for_real_and_says_so(
    bpe_model: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from parity.baseline import create_baseline

    path, _ = create_baseline(
        ["custom"], ["one text", "two texts"], tmp_path / "b", model=bpe_model
    )
    monkeypatch.setenv("PARITY_CACHE", str(tmp_path / "cache"))
    assert main(["gate", "--baseline", str(path), "--model", str(bpe_model)]) == 0
    assert "the gate never reads the embedding cache" in capsys.readouterr().err
    assert not (tmp_path / "cache").exists()


def test_a_cache_that_cannot_be_written_costs_a_warning_not_the_run(tmp_path: Path) -> None:
    blocked = tmp_path / "file-not-dir"
    blocked.write_text("")
    cache = EmbeddingCache(blocked / "cache")
    with pytest.warns(RuntimeWarning, match=r"cannot write \(Not a directory\); this run's"):
        cache.store("k", [text_sha256("a")], _vectors(1))
    assert cache.lookup("k", [text_sha256("a")]) == {}


def test_the_key_changes_when_the_adapters_source_changes(tmp_path: Path) -> None:
    import importlib
    import sys

    from parity.cache import adapter_code

    module = tmp_path / "edited_plugin.py"
    module.write_text("class Mine:\n    pooling = 'mean'\n")
    sys.path.insert(0, str(tmp_path))
    try:
        before = adapter_code(importlib.import_module("edited_plugin").Mine)
        module.write_text("class Mine:\n    pooling = 'cls'\n")
        sys.modules.pop("edited_plugin")
        after = adapter_code(importlib.import_module("edited_plugin").Mine)
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("edited_plugin", None)
    assert before.startswith("edited_plugin.Mine parity ") and before != after


def test_stale_temp_files_are_removed_fresh_ones_kept(tmp_path: Path) -> None:
    import os
    import time

    cache = EmbeddingCache(tmp_path)
    cache.store("k", [text_sha256("a")], _vectors(1))
    folder = tmp_path / "v1" / "k"
    old, fresh = folder / ".x.npz.abc", folder / ".y.npz.def"
    old.write_bytes(b"half")
    fresh.write_bytes(b"half")
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    cache.evict()
    assert not old.exists() and fresh.exists()


@pytest.mark.slow
def test_one_configuration_twice_in_a_run_is_embedded_twice(
    bpe_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cache = tmp_path / "cache"
    _run(bpe_model, cache, tmp_path / "one", "custom", "custom:label=again")
    _run(bpe_model, cache, tmp_path / "two", "custom", "custom:label=again", rerun=True)
    err = capsys.readouterr().err
    # the second run reads the first side from the cache; the same configuration again is
    # embedded for real, so a "same stack twice" check compares two real embeddings
    assert err.count("from the cache") == 1
    assert "custom: 120 of 120 texts from the cache" in err


def test_a_lookup_reads_only_the_shards_holding_its_texts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    writer = EmbeddingCache(tmp_path)
    for shard in range(40):  # a streamed run's chunks: one shard each
        hashes = [text_sha256(f"t{shard}-{i}") for i in range(2)]
        writer.store("k", hashes, np.full((2, 3), shard, dtype=np.float32))
    reads: list[Path] = []
    original = EmbeddingCache._read

    def counting(self: EmbeddingCache, shard: Path) -> object:
        reads.append(shard)
        return original(self, shard)

    monkeypatch.setattr(EmbeddingCache, "_read", counting)
    chunk = EmbeddingCache(tmp_path)  # a streamed run's chunk again: its own shard, by name
    assert len(chunk.lookup("k", [text_sha256("t3-0"), text_sha256("t3-1")])) == 2
    assert [p.parent.name for p in reads] == ["k"] and "k" not in chunk._index
    reads.clear()
    reader = EmbeddingCache(tmp_path)
    assert reader.lookup("k", [text_sha256("new")]) == {} and reads == []  # a cold chunk
    found = reader.lookup("k", [text_sha256("t7-0"), text_sha256("t7-1"), text_sha256("t9-1")])
    assert sorted(float(v[0]) for v in found.values()) == [7.0, 7.0, 9.0] and len(reads) == 2
    reader.store("k", [text_sha256("late")], np.ones((1, 3), np.float32))
    assert reader.lookup("k", [text_sha256("late")])[text_sha256("late")].tolist() == [1, 1, 1]


def test_the_adapter_code_key_is_the_same_however_parity_is_started(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import importlib.metadata

    from parity.adapters.custom import CustomAdapter
    from parity.cache import adapter_code
    from parity.version import __version__

    code = adapter_code.__wrapped__  # not the memo: each call reads the distributions again
    monkeypatch.setattr(
        importlib.metadata, "packages_distributions", lambda: {"parity": ["parity"]}
    )
    once = code(CustomAdapter)
    # `python -m` from a checkout: the source tree's .egg-info lists the distribution again
    twice = {"parity": ["parity", "parity"]}
    monkeypatch.setattr(importlib.metadata, "packages_distributions", lambda: twice)
    assert code(CustomAdapter) == once and once.count(f"parity {__version__}") == 2
