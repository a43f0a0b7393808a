"""pytest plugin: options, fixtures and the `parity` marker. Imports nothing heavy at load time."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

DEFAULT_ADAPTERS = ["sentence-transformers", "custom"]


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("parity", "embedding parity (parity)")
    group.addoption(
        "--parity-model",
        dest="parity_model",
        default=None,
        help="local model directory (default: bundled all-MiniLM-L6-v2)",
    )
    group.addoption(
        "--parity-adapter",
        dest="parity_adapters",
        action="append",
        default=None,
        metavar="SPEC",
        help="adapter spec as in `parity run`, repeatable "
        "(default: sentence-transformers and custom)",
    )
    group.addoption(
        "--parity-tol",
        dest="parity_tol",
        action="append",
        default=None,
        help="tolerance as in `parity run --tol`",
    )
    group.addoption(
        "--parity-profile",
        dest="parity_profile",
        default=None,
        choices=("ci", "dev", "deep"),
        help="hypothesis profile (default: $HYPOTHESIS_PROFILE or dev)",
    )
    group.addoption(
        "--parity-regressions",
        dest="parity_regressions",
        default="fixtures/regressions.jsonl",
        help="regression corpus replayed first and appended to on failure",
    )
    group.addoption(
        "--parity-regen",
        dest="parity_regen",
        action="store_true",
        default=False,
        help="rewrite the baselines of parity_baseline checks (the old ones are kept as .prev)",
    )


def pytest_configure(config: pytest.Config) -> None:
    import os

    config.addinivalue_line("markers", "parity: an embedding parity check")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    if config.getoption("parity_profile", None) or os.environ.get("HYPOTHESIS_PROFILE"):
        from parity.search.profiles import load_profile

        load_profile(config.getoption("parity_profile", None))


class _Session:
    """Adapters loaded once, the regression replay, and the last failing example."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.adapters: dict[str, Any] = {}
        self.replayed = False
        self.last_failure: dict[str, Any] | None = None

    def regressions_path(self) -> Path:
        path = Path(self.config.getoption("parity_regressions"))
        # relative to where pytest was started, as the `parity fuzz --regressions` default is
        return path if path.is_absolute() else self.config.invocation_params.dir / path

    def load(self) -> dict[str, Any]:
        if not self.adapters:
            from parity.adapters import parse_specs
            from parity.modelinfo import resolve_model

            model = resolve_model(self.config.getoption("parity_model"))
            specs = parse_specs(self.config.getoption("parity_adapters") or DEFAULT_ADAPTERS)
            for spec in specs:
                adapter = spec.build(model)
                adapter.load()
                self.adapters[spec.label] = adapter
        return self.adapters

    def close(self) -> None:
        for adapter in self.adapters.values():
            adapter.close()


_KEY = pytest.StashKey[_Session]()


def _session(config: pytest.Config) -> _Session:
    if _KEY not in config.stash:
        config.stash[_KEY] = _Session(config)
    return config.stash[_KEY]


@pytest.fixture(scope="session")
def parity_adapters(pytestconfig: pytest.Config) -> Iterator[dict[str, Any]]:
    """The adapters named by --parity-adapter, loaded once per session (label -> Adapter)."""
    state = _session(pytestconfig)
    yield state.load()
    state.close()


@pytest.fixture(scope="session")
def assert_parity(
    pytestconfig: pytest.Config, parity_adapters: dict[str, Any]
) -> Callable[..., None]:
    """assert_parity(texts, *, adapters=None, tol=None): every pair within tolerance, or fail
    with the top cause, the worst text, each metric against its tolerance, and the tokens."""
    from parity.compare import Tolerance

    state = _session(pytestconfig)
    default_tol = Tolerance.parse(pytestconfig.getoption("parity_tol"))

    def check(
        texts: Sequence[str],
        *,
        adapters: dict[str, Any] | None = None,
        tol: str | Tolerance | None = None,
    ) -> None:
        __tracebackhide__ = True
        tolerance = (
            tol
            if isinstance(tol, Tolerance)
            else (Tolerance.parse(tol) if tol is not None else default_tol)
        )
        chosen = adapters or parity_adapters
        if not state.replayed:
            state.replayed = True
            from parity.search.regressions import regression_texts

            known = regression_texts(state.regressions_path())
            if known:
                _check(
                    state,
                    known,
                    chosen,
                    tolerance,
                    f"known regression (replayed first from {state.regressions_path().name})",
                )
        _check(state, list(texts), chosen, tolerance, None)

    return check


@pytest.fixture
def parity_baseline(
    request: pytest.FixtureRequest, pytestconfig: pytest.Config, parity_adapters: dict[str, Any]
) -> Callable[..., None]:
    """parity_baseline(texts, *, name=None, adapters=None, tol=None): every adapter reproduces
    the vectors stored in <test dir>/<test module>/<name or test name>/. A missing baseline is
    written and the test fails once, saying so; --parity-regen rewrites it."""
    from parity.compare import Tolerance

    default_tol = Tolerance.parse(pytestconfig.getoption("parity_tol"))
    regen = bool(pytestconfig.getoption("parity_regen"))

    def check(
        texts: Sequence[str],
        *,
        name: str | None = None,
        adapters: dict[str, Any] | None = None,
        tol: str | Tolerance | None = None,
    ) -> None:
        __tracebackhide__ = True
        from parity.baseline import check as baseline_check
        from parity.errors import BaselineError

        if tol is None:
            tolerance = default_tol
        else:
            tolerance = tol if isinstance(tol, Tolerance) else Tolerance.parse(tol)
        chosen = adapters or parity_adapters
        path = baseline_check.baseline_dir(request.path, request.node.name, name)
        if regen or not path.exists():
            previous = baseline_check.record(path, chosen, list(texts), tolerance)
            what = "regenerated (--parity-regen)" if regen else "did not exist"
            kept = f"; the previous one is kept in {previous}" if previous else ""
            pytest.fail(
                f"parity baseline {path} {what}: recorded {len(texts)} texts with "
                f"{', '.join(chosen)}{kept}. Commit it and rerun.",
                pytrace=False,
            )
        try:
            message = baseline_check.check(path, chosen, list(texts), tolerance)
        except BaselineError as exc:
            pytest.fail(str(exc), pytrace=False)
        if message:
            raise AssertionError(message)

    return check


def _check(
    state: _Session, texts: list[str], adapters: dict[str, Any], tolerance: Any, origin: str | None
) -> None:
    __tracebackhide__ = True
    from parity.assertions import failure_message, first_failure

    if not texts:
        return
    failed = first_failure(adapters, texts, tolerance)
    if failed is None:
        return
    pair, worst = failed
    state.last_failure = {
        "text": worst.text,
        "adapters": [pair.a, pair.b],
        "metrics": {"max_abs": worst.max_abs, "cosine": worst.cosine, "euclidean": worst.euclidean},
    }
    raise AssertionError(failure_message(pair, worst, adapters, tolerance, origin))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if call.when == "call" and report.failed and _KEY in item.config.stash:
        state = item.config.stash[_KEY]
        if state.last_failure is not None:
            from parity.search.regressions import append_regression

            failure = state.last_failure
            append_regression(
                failure["text"], failure["adapters"], failure["metrics"], state.regressions_path()
            )
            state.last_failure = None
    return report
