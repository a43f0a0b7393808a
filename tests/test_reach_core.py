"""Per-adapter model=, the entry-point registry, and an adapter installed from another package."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from parity.adapters import AdapterSpec, parse_specs
from parity.adapters.registry import BUILTIN, PluginError, Registry
from parity.errors import SpecError

REPO = Path(__file__).resolve().parents[1]
PARITY = [sys.executable, "-m", "parity"]


def test_model_option_loads_that_directory_instead_of_the_runs(tmp_path: Path) -> None:
    spec = AdapterSpec.parse("custom:model=~/exported, strip=true")
    assert spec.model == "~/exported"
    assert spec.label == "custom:model=~/exported,strip=true"
    assert AdapterSpec.parse(spec.as_string()) == spec
    adapter = spec.build(tmp_path / "run-model")
    assert adapter.model == str(Path("~/exported").expanduser())
    assert adapter.config["strip"] is True
    assert AdapterSpec.parse("custom").build(tmp_path / "run-model").model == str(
        tmp_path / "run-model"
    )


def test_model_option_needs_a_value() -> None:
    with pytest.raises(SpecError, match="model= needs a value"):
        parse_specs(["custom:model= "])


def test_unknown_option_lists_label_and_model() -> None:
    with pytest.raises(SpecError, match=r"valid options: .*strip.*, label, model"):
        parse_specs(["custom:nope=1"])


def _write_plugin_dist(root: Path, name: str, target: str) -> None:
    """A real installed distribution (dist-info with entry_points.txt) declaring one adapter."""
    info = root / f"{name}_dist-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}-dist\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[parity.adapters]\n{name} = {target}\n")


def test_a_plugin_that_does_not_import_is_named_with_its_distribution(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write_plugin_dist(tmp_path, "broken", "no_such_module_xyz:Adapter")
    monkeypatch.syspath_prepend(str(tmp_path))
    registry = Registry(BUILTIN)
    assert "broken" in registry and registry.is_plugin("broken")
    with pytest.raises(PluginError) as caught:
        registry["broken"]
    message = str(caught.value)
    assert "adapter plugin 'broken'" in message
    assert "'no_such_module_xyz:Adapter'" in message
    assert "broken-dist" in message
    assert "ModuleNotFoundError" in message
    # every other adapter stays usable
    assert registry["custom"].name == "custom"


def test_a_plugin_that_is_not_an_adapter_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write_plugin_dist(tmp_path, "notanadapter", "json:dumps")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(PluginError, match="json:dumps is not an Adapter subclass"):
        Registry(BUILTIN)["notanadapter"]


def test_a_plugin_never_shadows_a_builtin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write_plugin_dist(tmp_path, "custom", "no_such_module_xyz:Adapter")
    monkeypatch.syspath_prepend(str(tmp_path))
    registry = Registry(BUILTIN)
    assert not registry.is_plugin("custom")
    assert registry["custom"].__module__ == "parity.adapters.custom"


def test_broken_plugin_is_one_exit_2_line_and_listed_as_broken(tmp_path: Path) -> None:
    _write_plugin_dist(tmp_path, "broken", "no_such_module_xyz:Adapter")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    run = subprocess.run(
        [*PARITY, "run", "--adapter", "custom", "--adapter", "broken"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert run.returncode == 2, run.stderr
    assert "adapter plugin 'broken'" in run.stderr and "Traceback" not in run.stderr
    listed = subprocess.run(
        [*PARITY, "list-adapters"], capture_output=True, text=True, env=env, check=True
    )
    assert "broken  (BROKEN PLUGIN: adapter plugin 'broken'" in listed.stdout
    assert "custom  (available)" in listed.stdout


@pytest.fixture(scope="module")
def installed_example(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """examples/custom_adapter installed with pip (no network, no build isolation) into a
    target directory put on PYTHONPATH, so the shared venv is left as it was."""
    target = tmp_path_factory.mktemp("site")
    source = tmp_path_factory.mktemp("src") / "custom_adapter"
    shutil.copytree(REPO / "examples" / "custom_adapter", source)  # pip builds in place
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check",
         "--no-deps", "--no-build-isolation", "--no-index", "--target", str(target), str(source)],
        check=True,
    )  # fmt: skip
    return target


@pytest.mark.slow
def test_installed_example_adapter_runs_against_sentence_transformers(
    installed_example: Path, bpe_model: Path, tmp_path: Path
) -> None:
    env = {**os.environ, "PYTHONPATH": str(installed_example)}
    listed = subprocess.run(
        [*PARITY, "list-adapters"], capture_output=True, text=True, env=env, check=True
    )
    assert "mine  (available)  [plugin]" in listed.stdout
    assert "max_length=256" in listed.stdout
    out = tmp_path / "out"
    run = subprocess.run(
        [*PARITY, "run", "--model", str(bpe_model), "--adapter", "sentence-transformers",
         "--adapter", "mine", "--adapter", "mine:max_length=128", "--out", str(out)],
        capture_output=True, text=True, env=env, check=False,
    )  # fmt: skip
    assert run.returncode == 1, run.stderr
    summary = json.loads((out / "summary.json").read_text())
    pairs = {(p["a"], p["b"]): p for p in summary["pairs"]}
    # the plugin truncates at 256; the tiny model is configured for 128: diagnosis measures it
    # through the plugin's own options, like any built-in adapter
    failing = pairs[("sentence-transformers", "mine")]
    assert failing["passed"] is False
    assert [(c["cause"], c["evidence"]) for c in failing["causes"]] == [("truncation", "measured")]
    assert failing["causes"][0]["fix"].startswith("set max_length=128 on mine")
    # given that limit, the plugin's mean pooling + unit norm is what the model's modules do
    assert pairs[("sentence-transformers", "mine:max_length=128")]["passed"] is True


def test_baseline_records_each_adapters_own_model_and_the_gate_sees_it_change(
    bpe_model: Path, tmp_path: Path
) -> None:
    from parity.baseline import create_baseline, load_baseline

    copy = tmp_path / "finetuned"
    shutil.copytree(bpe_model, copy)
    path, _ = create_baseline(
        ["custom", f"custom:model={copy},label=copy"],
        ["a text", " another text "],
        tmp_path / "baseline",
        model=bpe_model,
    )
    baseline = load_baseline(path)
    own = baseline.entry("copy")["model"]
    assert own["path"] == str(copy.resolve())
    assert own["files"]["config.json"] == baseline.manifest["model"]["files"]["config.json"]
    assert baseline.entry("custom")["model"] == {
        "path": str(bpe_model.resolve()),
        "run_model": True,
    }
    assert baseline.entry("copy")["describe"]["model"] == str(copy)
    (copy / "config.json").write_text((copy / "config.json").read_text() + "\n")
    lines = baseline.environment_diff(bpe_model)["lines"]
    assert [line for line in lines if line.startswith("copy: ")] == [
        line for line in lines if "config.json" in line
    ]
    assert any(line.startswith("copy: model file hash changed: config.json") for line in lines)


def test_a_served_side_records_the_served_model_not_the_runs(tmp_path: Path) -> None:
    from parity.baseline.create import adapter_model

    served = AdapterSpec.parse("http:url=http://127.0.0.1:9/embeddings")
    config = {"served_model": "minilm", "model": ""}
    assert adapter_model(served, config, tmp_path) == {"served": "minilm", "path": None}
    named = AdapterSpec.parse("http:url=http://127.0.0.1:9/embeddings,model=m2")
    assert adapter_model(named, {"served_model": None}, tmp_path) == {"served": "m2", "path": None}
