"""pytest plugin: options, fixtures, the `parity` marker and the `parity-regressions` item.

Loaded into every pytest run of an environment that has parity installed, so it is inert
unless a test uses one of its fixtures: loading it changes no environment variable, loads no
hypothesis profile and imports neither hypothesis nor any framework. Using a fixture changes no
environment variable either: the adapters load a local model directory with the frameworks'
local_files_only, so they never reach a hub (offline flags such as HF_HUB_OFFLINE are read once,
when huggingface_hub is imported, so setting them here could not work). Hypothesis tests that use a parity fixture (and no @settings of their own) get parity's
profile; every other test keeps hypothesis' own.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

DEFAULT_ADAPTERS = ["sentence-transformers", "custom"]
PARITY_FIXTURES = frozenset({"assert_parity", "parity_adapters", "parity_baseline"})
REPLAY_ITEM = "parity-regressions"
_RECORD = "parity_regression"
"""Attribute of an assert_parity failure holding its corpus record (see _recorded_failures)."""


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
        help="hypothesis settings (no deadline) for @given tests that use a parity fixture "
        "and have no @settings of their own (default: $HYPOTHESIS_PROFILE when it is ci, "
        "dev or deep, else dev); other tests keep hypothesis' own profile",
    )
    group.addoption(
        "--parity-regressions",
        dest="parity_regressions",
        default="fixtures/regressions.jsonl",
        help="regression corpus: its entries for the model under test are replayed by the "
        f"{REPLAY_ITEM} item (when the file exists and a test uses parity); a failing "
        "assert_parity check appends its worst text",
    )
    group.addoption(
        "--parity-regen",
        dest="parity_regen",
        action="store_true",
        default=False,
        help="rewrite the baselines of parity_baseline checks (the old ones are kept as .prev)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "parity: an embedding parity check")


class _Session:
    """Adapters loaded once, for fixtures and the replay."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.adapters: dict[str, Any] = {}
        self.model: Path | None = None

    def regressions_path(self) -> Path:
        path = Path(self.config.getoption("parity_regressions"))
        # relative to where pytest was started, as the `parity fuzz --regressions` default is
        return path if path.is_absolute() else self.config.invocation_params.dir / path

    def resolve_model(self) -> Path:
        if self.model is None:
            from parity.modelinfo import resolve_model

            self.model = resolve_model(self.config.getoption("parity_model"))
        return self.model

    def load(self) -> dict[str, Any]:
        if not self.adapters:
            from parity.adapters import parse_specs

            specs = parse_specs(self.config.getoption("parity_adapters") or DEFAULT_ADAPTERS)
            model = self.resolve_model()
            for spec in specs:
                adapter = spec.build(model)
                adapter.load()
                self.adapters[spec.label] = adapter
        return self.adapters

    def close(self) -> None:
        """Free the adapters."""
        for adapter in self.adapters.values():
            adapter.close()
        self.adapters.clear()


_KEY = pytest.StashKey[_Session]()


def _session(config: pytest.Config) -> _Session:
    if _KEY not in config.stash:
        config.stash[_KEY] = _Session(config)
    return config.stash[_KEY]


def _tolerance(config: pytest.Config, tol: Any = None) -> Any:
    from parity.metrics import Tolerance

    if isinstance(tol, Tolerance):
        return tol
    return Tolerance.parse(tol if tol is not None else config.getoption("parity_tol"))


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
    default_tol = _tolerance(pytestconfig)

    def check(
        texts: Sequence[str],
        *,
        adapters: dict[str, Any] | None = None,
        tol: Any = None,
    ) -> None:
        __tracebackhide__ = True
        tolerance = default_tol if tol is None else _tolerance(pytestconfig, tol)
        _check(list(texts), adapters or parity_adapters, tolerance, None)

    return check


@pytest.fixture
def parity_baseline(
    request: pytest.FixtureRequest, pytestconfig: pytest.Config, parity_adapters: dict[str, Any]
) -> Callable[..., None]:
    """parity_baseline(texts, *, name=None, adapters=None, tol=None): every adapter reproduces
    the vectors stored in <test dir>/<test module>/<name or test name>/. A missing baseline is
    written and the test fails once, saying so; --parity-regen rewrites it."""
    default_tol = _tolerance(pytestconfig)
    regen = bool(pytestconfig.getoption("parity_regen"))

    def check(
        texts: Sequence[str],
        *,
        name: str | None = None,
        adapters: dict[str, Any] | None = None,
        tol: Any = None,
    ) -> None:
        __tracebackhide__ = True
        from parity.baseline import check as baseline_check
        from parity.errors import BaselineError

        tolerance = default_tol if tol is None else _tolerance(pytestconfig, tol)
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


@functools.lru_cache(maxsize=16)
def _model_identity(model: str) -> str:
    from parity.search.regressions import model_identity

    return model_identity(model)


def _model_of(adapter: Any) -> str | None:
    """The model_identity() of an adapter's model, None for an adapter that names none."""
    model = getattr(adapter, "model", None)
    return _model_identity(str(model)) if model else None


def _check(texts: list[str], adapters: dict[str, Any], tolerance: Any, origin: str | None) -> None:
    """Fail with the first failing pair's message; a new failure (origin None) carries its
    corpus record on the exception, so only a failure that reaches pytest is recorded."""
    __tracebackhide__ = True
    from parity.assertions import failure_message, first_failure

    if not texts:
        return
    failed = first_failure(adapters, texts, tolerance)
    if failed is None:
        return
    pair, worst = failed
    error = AssertionError(failure_message(pair, worst, adapters, tolerance, origin))
    if origin is None:
        record = {
            "text": worst.text,
            "adapters": [pair.a, pair.b],
            "model": _model_of(adapters[pair.a]),
            "metrics": {
                "max_abs": worst.max_abs,
                "cosine": worst.cosine,
                "euclidean": worst.euclidean,
            },
        }
        setattr(error, _RECORD, record)
    raise error


class RegressionReplay(pytest.Item):
    """The `parity-regressions` item: the corpus entries recorded on the model under test (and
    those recorded without a model), checked with the session's adapters and tolerance."""

    def runtest(self) -> None:
        from parity.search.regressions import regression_texts

        state = _session(self.config)
        path = state.regressions_path()
        model = _model_identity(str(state.resolve_model()))
        texts = regression_texts(path, model=model)
        if not texts:
            pytest.skip(f"{path} records no regression for {model}")
        origin = f"known regression (replayed first from {path.name})"
        _check(texts, state.load(), _tolerance(self.config), origin)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> Any:
        if isinstance(excinfo.value, AssertionError):
            return str(excinfo.value)
        return super().repr_failure(excinfo, style=style)

    def reportinfo(self) -> tuple[Path, int | None, str]:
        return _session(self.config).regressions_path(), None, REPLAY_ITEM


def _uses_parity(item: pytest.Item) -> bool:
    return not PARITY_FIXTURES.isdisjoint(getattr(item, "fixturenames", ()))


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(
    session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
) -> None:
    """Parity's profile for parity hypothesis tests; the replay item first, when needed."""
    parity_items = [item for item in items if _uses_parity(item)]
    if not parity_items:
        return
    _apply_profile(config, parity_items)
    corpus = _session(config).regressions_path()
    if corpus.is_file():
        # shown as <corpus>::parity-regressions, like a test in a file
        where = (
            corpus.relative_to(config.rootpath) if corpus.is_relative_to(config.rootpath) else None
        )
        nodeid = f"{where.as_posix()}::{REPLAY_ITEM}" if where else REPLAY_ITEM
        replay = RegressionReplay.from_parent(session, name=REPLAY_ITEM, path=corpus, nodeid=nodeid)
        items.insert(0, replay)


def _apply_profile(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Decorate each parity @given test that has no @settings of its own with parity's
    settings; hypothesis' loaded profile, and so every other test, is left alone."""
    tests = []
    for item in items:
        test = getattr(getattr(item, "obj", None), "__func__", getattr(item, "obj", None))
        if getattr(test, "is_hypothesis_test", False):
            tests.append(test)
    if not tests:
        return  # not even hypothesis is imported
    from parity.search.profiles import SETTINGS, parity_profile_name

    chosen = SETTINGS[parity_profile_name(config.getoption("parity_profile"))]
    for test in tests:
        if not hasattr(test, "_hypothesis_internal_settings_applied"):
            chosen(test)


def _recorded_failures(error: BaseException | None) -> list[dict[str, Any]]:
    """The corpus records carried by the exception that failed a test, its cause, and the
    members of an exception group (hypothesis reports several distinct failures as one)."""
    if error is None:
        return []
    record = getattr(error, _RECORD, None)
    found = [record] if isinstance(record, dict) else []
    found += _recorded_failures(error.__cause__)
    for member in getattr(error, "exceptions", ()):
        found += _recorded_failures(member)
    return found


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if call.when == "call" and report.failed and call.excinfo is not None:
        records = _recorded_failures(call.excinfo.value)
        if records:
            from parity.search.regressions import append_regression

            path = _session(item.config).regressions_path()
            for record in records:
                append_regression(
                    record["text"],
                    record["adapters"],
                    record["metrics"],
                    path,
                    model=record["model"],
                )
    return report


def pytest_sessionfinish(session: pytest.Session) -> None:
    if _KEY in session.config.stash:
        session.config.stash[_KEY].close()
