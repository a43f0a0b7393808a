"""An unchanged `parity run` answered from the cache: the run's outputs (summary.json and the
report files) are kept under a key of everything that decides them, and a run with the same key
copies them back instead of loading, embedding and diagnosing again.

The key: parity's own files (diagnosis included), every side's spec, adapter code and model
files, the versions of every library an adapter reports, the platform and Python, the texts'
sha256, the tolerance and the command's flags. A side the embedding cache may not hold (a server,
a vectors file) or one off the CPU (whose accelerator the key cannot read without loading torch)
makes the run one that is never remembered."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import json
import os
import platform
import sys
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from parity.adapters import AdapterSpec
from parity.adapters.base import VERSIONED_PACKAGES, library_versions
from parity.cache import EmbeddingCache, adapter_code, model_digest
from parity.errors import ParityInputError
from parity.files import os_reason, text_sha256, write_atomic

SUMMARY = "summary.json"
WHEN = "remembered.json"  # when the remembered run ran
KIND = "parity-run-v1"


@functools.cache
def package_digest() -> str:
    """sha256 over parity's own files: a changed probe or report changes every key."""
    root = Path(__file__).resolve().parent
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def run_key(
    specs: Sequence[AdapterSpec],
    model: Path,
    texts: Sequence[str],
    settings: Mapping[str, Any],
) -> str | None:
    """The key of a run's outputs, or None where the run must not be remembered."""
    sides = []
    distributions: set[str] = set(VERSIONED_PACKAGES)
    for spec in specs:
        adapter = spec.build(model)  # built, not loaded: no framework is imported
        if not adapter.cacheable or not adapter.on_cpu():
            return None
        cls = type(adapter)
        distributions.update(cls.distributions)
        side_model = model_digest(adapter.model) or adapter.model
        sides.append([spec.as_string(), adapter_code(cls), side_model])
    material = {
        "kind": KIND,
        "parity": package_digest(),
        "sides": sides,
        "versions": library_versions(sorted(distributions)),
        "platform": [platform.platform(), platform.machine(), sys.version, *cpu_identity()],
        "texts": hashlib.sha256("".join(map(text_sha256, texts)).encode()).hexdigest(),
        "settings": dict(settings),
    }
    blob = json.dumps(material, sort_keys=True, default=str).encode("utf-8")
    return "run-" + hashlib.sha256(blob).hexdigest()


# /proc/cpuinfo fields naming the CPU and its instruction sets (x86, then ARM)
CPU_FIELDS = ("model name", "flags", "Features", "CPU implementer", "CPU part")
# environment variables that choose CPU kernels or threads (not those parity or a library sets
# for itself while loading: TRANSFORMERS_OFFLINE, KMP_DUPLICATE_LIB_OK ... would split one
# process's keys from the next)
KERNEL_ENV = (
    *("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_CBWR"),
    *("MKL_ENABLE_INSTRUCTIONS", "ATEN_CPU_CAPABILITY", "DNNL_MAX_CPU_ISA", "ONEDNN_MAX_CPU_ISA"),
    *("DNNL_DEFAULT_FPMATH_MODE", "ONEDNN_DEFAULT_FPMATH_MODE", "TORCH_NUM_THREADS"),
)


def cpu_identity() -> list[str]:
    """What the OS name does not say of the CPU: its model and instruction sets (the kernels
    torch picks), its core count, and every environment variable that picks kernels or
    threads (they change the batch noise)."""
    found = dict.fromkeys(CPU_FIELDS, "")
    with contextlib.suppress(OSError):
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
        for line in text.splitlines():
            name, _, value = line.partition(":")
            if name.strip() in found and not found[name.strip()]:
                found[name.strip()] = value.strip()
    env = [f"{name}={os.environ.get(name, '')}" for name in KERNEL_ENV]
    return [platform.processor(), *found.values(), str(os.cpu_count()), *env]


def worth_keeping(summary: Mapping[str, Any]) -> bool:
    """False where a probe of the diagnosis crashed: a passing failure (memory, a flaky disk)
    must not be replayed as the diagnosis of every later identical run."""
    for pair in summary.get("pairs", []):
        probes = (pair.get("diagnosis") or {}).get("probes", [])
        if any(probe.get("crashed") for probe in probes):
            return False
    return True


@dataclass
class Remembered:
    """A run's key in one cache: recall() its outputs, or keep() them after the run."""

    cache: EmbeddingCache
    key: str

    def recall(self, out: str | Path | None, wanted: Sequence[str]) -> Recalled | None:
        """The remembered run: its summary.json dict and when it ran, its files (those in
        `wanted`) written into `out`; None when nothing is remembered or it wrote fewer files."""
        data = self.cache.read_blob(self.key)
        if data is None:
            return None
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                files = {name: archive.read(name) for name in archive.namelist()}
            summary = json.loads(files[SUMMARY])
            when = json.loads(files[WHEN])["ran"]
        except (zipfile.BadZipFile, KeyError, TypeError, ValueError, OSError):
            return None  # damaged: the run runs and replaces it
        if not isinstance(summary, dict) or (out is not None and not set(wanted) <= set(files)):
            return None
        if out is not None:
            _write_files(Path(out), {name: files[name] for name in wanted})
        return Recalled(summary, str(when))

    def keep(
        self, summary: Mapping[str, Any], out: str | Path | None, names: Sequence[str]
    ) -> None:
        """Store summary.json and the named files `out` holds (report.md, report.html, ...)."""
        buffer = io.BytesIO()
        ran = datetime.now(timezone.utc).replace(microsecond=0).isoformat()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            archive.writestr(WHEN, json.dumps({"ran": ran}))
            if out is None or not (Path(out) / SUMMARY).is_file():
                archive.writestr(SUMMARY, json.dumps(summary, default=str))
            for name in names:
                path = Path(out) / name if out is not None else None
                if path is not None and path.is_file():
                    archive.write(path, name)  # summary.json too: its very bytes
        self.cache.store_blob(self.key, buffer.getvalue())


@dataclass
class Recalled:
    """A remembered run: its summary.json dict, and when it ran (ISO 8601, UTC)."""

    summary: dict[str, Any]
    ran: str


def _write_files(out: Path, files: Mapping[str, bytes]) -> None:
    if out.exists() and not out.is_dir():  # as a run says it (report.summary.write_outputs)
        raise ParityInputError(
            f"{out}: cannot write the report there: it is a file, not a directory; "
            "give --out a directory (it is created if missing)"
        )
    try:
        out.mkdir(parents=True, exist_ok=True)
        for name, data in files.items():
            write_atomic(out / name, data)
    except OSError as exc:
        raise ParityInputError(
            f"{exc.filename or out}: cannot write the report: {os_reason(exc)}; "
            "give --out a writable directory"
        ) from exc


def remembered(
    cache: EmbeddingCache,
    specs: Sequence[AdapterSpec],
    model: Path,
    texts: Sequence[str],
    settings: Mapping[str, Any],
) -> Remembered | None:
    """The run's place in `cache`, or None for a run that is never remembered."""
    key = run_key(specs, model, texts, settings)
    return None if key is None else Remembered(cache, key)
