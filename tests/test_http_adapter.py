"""The `http` adapter against a real Infinity server, and its one-line errors."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from infinity_server import InfinityServer, free_port, infinity, stop

from parity.adapters import AdapterSpec
from parity.adapters.http import public_url
from parity.cli import main
from parity.errors import AdapterError, SpecError

__all__ = ["infinity"]  # the session fixture, imported so pytest finds it here

SBERT = "sentence-transformers"
KEY = "sk-test-0123456789-do-not-print"

# A second HTTP server for the client's error paths and request format ONLY: no real embedding
# server can be made to answer 500, drop a vector, stall or reorder on purpose, and TEI is a Rust
# binary that cannot be installed here. A stdlib http.server in its own process (real sockets,
# real HTTP), never a stand-in for a server's numbers: its vectors are [len(text), 1].
MISBEHAVING = r"""
import json, sys, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

seen, last = {}, {}

class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def reply(self, status, payload, raw=None):
        body = raw if raw is not None else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path == "/seen":
            return self.reply(200, {"seen": seen, "last": last})
        if self.path == "/v1/models":
            return self.reply(200, {"data": [{"id": "the-only-one"}]})
        if self.path == "/info":  # TEI's
            return self.reply(200, {"model_id": "BAAI/bge-small-en-v1.5", "version": "1.8.0"})
        self.reply(404, {"detail": "Not Found"})

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        texts = body["inputs"] if self.path == "/embed" else body["input"]
        seen[self.path] = seen.get(self.path, 0) + 1
        last[self.path] = body
        data = [{"index": i, "embedding": [float(len(t)), 1.0]} for i, t in enumerate(texts)]
        if self.path == "/embed":
            return self.reply(200, [d["embedding"] for d in data])
        if self.path == "/500":
            return self.reply(500, {"error": {"message": "boom " + "x" * 300, "code": 500}})
        if self.path == "/flaky" and seen[self.path] == 1:
            return self.reply(503, {"error": {"message": "warming up"}}, None)
        if self.path == "/count":
            data = data[:-1]
        if self.path == "/slow":
            time.sleep(5)
        if self.path == "/reversed":
            data = data[::-1]
        if self.path == "/nan":
            data[0]["embedding"][0] = float("nan")
        if self.path == "/auth" and self.headers.get("Authorization") != "Bearer " + sys.argv[2]:
            return self.reply(401, {"detail": "Unauthorized"})
        if self.path == "/echo":  # as some proxies do: the header it refused, in its error
            return self.reply(401, {"detail": "bad " + str(self.headers.get("Authorization"))})
        if self.path == "/alternating":  # a server that changes model between requests
            for d in data:
                d["embedding"] += [0.0] * (seen[self.path] % 2)
        if self.path == "/partial":
            del data[0]["index"]
        self.reply(200, {"model": "stub", "data": data})

class Server(ThreadingHTTPServer):
    def handle_error(self, request, client_address):
        pass  # /slow writes after the client gave up: a broken pipe is the point

Server(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
"""


def start_misbehaving() -> tuple[str, subprocess.Popen[bytes]]:
    import httpx

    port = free_port()
    process = subprocess.Popen([sys.executable, "-c", MISBEHAVING, str(port), KEY])
    base = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            httpx.get(base + "/seen", timeout=1)
            return base, process
        except httpx.TransportError:
            time.sleep(0.05)
    stop(process)
    raise RuntimeError("the misbehaving test server did not start")


@pytest.fixture(scope="module")
def stub() -> Iterator[str]:
    base, process = start_misbehaving()
    yield base
    stop(process)


def _texts(tmp_path: Path, texts: list[str]) -> Path:
    path = tmp_path / "texts.jsonl"
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts), encoding="utf-8")
    return path


def run(model: Path | str, texts: Path, out: Path, *specs: str) -> int:
    argv = ["run", "--model", str(model), "--texts", str(texts), "--out", str(out), "--quiet"]
    for spec in specs:
        argv += ["--adapter", spec]
    return main([*argv, "--no-retrieval"])


def one_line_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, bpe_model: Path, spec: str
) -> str:
    """Run sentence-transformers against `spec`: exit 2 and exactly one line, which is returned."""
    code = run(bpe_model, _texts(tmp_path, ["alpha", "beta gamma"]), tmp_path / "out", SBERT, spec)
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err.strip()


# -- no server needed ------------------------------------------------------------------------


def test_url_is_required_and_credentials_in_it_are_refused() -> None:
    with pytest.raises(SpecError, match=r"adapter 'http' needs url="):
        AdapterSpec.parse("http:model=m").build("")
    with pytest.raises(SpecError, match=r"the URL carries a credential; .* api_key_env=NAME"):
        AdapterSpec.parse("http:url=http://user:pw@127.0.0.1:1/embeddings")
    with pytest.raises(SpecError, match=r"the URL carries a credential"):
        AdapterSpec.parse("http:url=http://127.0.0.1:1/embeddings?api_key=abc")
    with pytest.raises(SpecError, match=r"NAME of an environment variable"):
        AdapterSpec.parse(f"http:url=http://127.0.0.1:1/e,api_key_env={KEY}")


def test_public_url_drops_userinfo_and_secret_query_parameters() -> None:
    url = "https://me:pw@example.test:8443/v1/embeddings?api-version=2&access_token=t&sig=s"
    assert public_url(url) == "https://example.test:8443/v1/embeddings?api-version=2"


# -- a misbehaving server: each failure is one line and exit 2 --------------------------------


def test_api_key_is_sent_but_never_described_labelled_or_reported(
    stub: str, tmp_path: Path, bpe_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PARITY_TEST_KEY", KEY)
    spec = AdapterSpec.parse(f"http:url={stub}/auth,api_key_env=PARITY_TEST_KEY")
    with spec.build("") as adapter:
        vectors = adapter.embed(["abc", "hello"])  # the stub answers 401 without the key
        described = adapter.describe()
    assert vectors.tolist() == [[3.0, 1.0], [5.0, 1.0]]
    assert described["url"] == f"{stub}/auth" and described["served_model"] == "stub"
    for shown in (json.dumps(described), adapter.label, spec.as_string(), repr(adapter)):
        assert KEY not in shown
    out = tmp_path / "out"
    texts = _texts(tmp_path, ["abc"])
    code = run(
        bpe_model,
        texts,
        out,
        f"http:url={stub}/auth,api_key_env=PARITY_TEST_KEY",
        f"http:url={stub}/auth,api_key_env=PARITY_TEST_KEY,label=again",
    )
    assert code == 0
    assert not [p for p in out.rglob("*") if p.is_file() and KEY in p.read_text(errors="ignore")]


def test_a_missing_key_variable_is_one_line(
    stub: str, tmp_path: Path, bpe_model: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    line = one_line_error(
        capsys, tmp_path, bpe_model, f"http:url={stub}/auth,api_key_env=PARITY_UNSET_KEY"
    )
    assert line.endswith(
        "environment variable PARITY_UNSET_KEY (api_key_env) is not set or empty; "
        "export it with the server's API key"
    )


def test_a_500_is_retried_then_one_line_with_the_server_text_cut(
    stub: str, tmp_path: Path, bpe_model: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    line = one_line_error(capsys, tmp_path, bpe_model, f"http:url={stub}/500,retries=1")
    said = f"{stub}/500 answered 500 after 2 attempts: boom "
    assert said in line
    assert line.endswith("x" * 192 + "...")  # the server's text cut to 200 characters
    assert len(line.split(said)[1]) == 200 - len("boom ")


def test_a_wrong_vector_count_is_one_line(
    stub: str, tmp_path: Path, bpe_model: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    line = one_line_error(capsys, tmp_path, bpe_model, f"http:url={stub}/count")
    assert line.endswith(f"{stub}/count sent 2 texts, got 1 vectors back")


def test_a_non_finite_value_is_one_line(
    stub: str, tmp_path: Path, bpe_model: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    line = one_line_error(capsys, tmp_path, bpe_model, f"http:url={stub}/nan")
    assert line.endswith(f"{stub}/nan vector 0 holds a value that is not a finite number")


def test_a_slow_server_times_out_in_one_line(
    stub: str, tmp_path: Path, bpe_model: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    started = time.perf_counter()
    line = one_line_error(capsys, tmp_path, bpe_model, f"http:url={stub}/slow,timeout=0.5")
    assert line.endswith(
        f"{stub}/slow no answer within 0.5 s (ReadTimeout); raise timeout= or lower batch_size="
    )
    assert time.perf_counter() - started < 4.5  # not retried: a read timeout is no 5xx


def test_a_killed_server_is_one_line_naming_the_url(
    tmp_path: Path, bpe_model: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base, process = start_misbehaving()
    stop(process)
    started = time.perf_counter()
    line = one_line_error(capsys, tmp_path, bpe_model, f"http:url={base}/embeddings,retries=2")
    assert f"{base}/embeddings cannot reach the server after 3 attempt(s) (ConnectError:" in line
    assert line.endswith("is it running?")
    assert time.perf_counter() - started >= 1.5  # backed off 0.5 s, then 1 s


def test_a_503_is_retried_and_vectors_come_back_in_index_order(stub: str) -> None:
    import httpx

    texts = ["a", "bbb", "cc"]
    with AdapterSpec.parse(f"http:url={stub}/flaky").build("") as adapter:
        assert adapter.embed(texts)[:, 0].tolist() == [1.0, 3.0, 2.0]
    assert httpx.get(stub + "/seen").json()["seen"]["/flaky"] == 2
    with AdapterSpec.parse(f"http:url={stub}/reversed,batch_size=2,concurrency=2").build(
        ""
    ) as adapter:
        assert adapter.embed([*texts, "dddd", "e"])[:, 0].tolist() == [1.0, 3.0, 2.0, 4.0, 1.0]


def test_requests_carry_the_model_dimensions_and_tei_fields(stub: str) -> None:
    import httpx

    def sent(path: str) -> object:
        return httpx.get(stub + "/seen").json()["last"][path]

    with AdapterSpec.parse(f"http:url={stub}/v1/embeddings").build("") as adapter:
        adapter.embed(["a"])  # no model=: the one model GET /v1/models lists is sent
        assert adapter.describe()["served_model"] == "stub"  # as the response names it
    assert sent("/v1/embeddings") == {
        "input": ["a"],
        "encoding_format": "float",
        "model": "the-only-one",
    }
    with AdapterSpec.parse(f"http:url={stub}/dims,model=m,dimensions=8").build("") as adapter:
        adapter.embed(["a"])
    assert sent("/dims") == {
        "input": ["a"],
        "encoding_format": "float",
        "model": "m",
        "dimensions": 8,
    }
    spec = f"http:url={stub}/embed,protocol=tei,normalize=false,truncate=true"
    with AdapterSpec.parse(spec).build("") as adapter:
        assert adapter.embed(["ab", "c"]).tolist() == [[2.0, 1.0], [1.0, 1.0]]
        described = adapter.describe()
    assert sent("/embed") == {"inputs": ["ab", "c"], "normalize": False, "truncate": True}
    assert described["server"] == "text-embeddings-inference"
    assert described["server_version"] == "1.8.0"
    assert described["served_model"] == "BAAI/bge-small-en-v1.5"
    assert described["protocol"] == "tei" and described["normalize"] is False


def test_a_missing_infinity_fails_and_says_make_servers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import infinity_server

    monkeypatch.setattr(infinity_server, "INFINITY", tmp_path / "bin" / "infinity_emb")
    with pytest.raises(pytest.fail.Exception, match=r"is missing: run `make servers`"):
        infinity_server.start_infinity({}, tmp_path)


# -- the real Infinity server -----------------------------------------------------------------

MINILM_TEXTS = [
    "How do I reset my password?",
    "  The river runs past the old mill.  ",
    "line one\nline two",
    "Stainless steel kettle, 1.7 litres",
    "café naïve 我们的文本",
    "a",
]
# byte-level BPE keeps edge whitespace as tokens; the last two have none at their edges
BPE_TEXTS = [" leading space", "trailing space ", "\tboth sides\n", "line one\nline two", "plain"]
EDGE = [0, 1, 2]


@pytest.mark.slow
def test_matched_pair_passes_on_minilm_against_infinity(
    infinity: InfinityServer, minilm: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    spec = f"http:url={infinity.embeddings_url},model=minilm"
    code = run(minilm, _texts(tmp_path, MINILM_TEXTS), out, "sentence-transformers", spec)
    summary = json.loads((out / "summary.json").read_text())
    assert code == 0
    worst = summary["pairs"][0]["stats"]["max_abs"]["max"]
    print(f"Infinity started in {infinity.start_seconds:.1f} s; MiniLM worst max-abs {worst:.3g}")
    assert worst < 5e-3
    http = summary["adapters"][1]["config"]
    assert http["url"] == infinity.embeddings_url and http["protocol"] == "openai"
    assert http["served_model"] == "minilm"
    assert "Infinity" in http["server"] and http["server_version"] == "0.0.78"


@pytest.mark.slow
def test_infinity_strips_edge_whitespace_and_diagnosis_measures_it(
    infinity: InfinityServer, bpe_model: Path, tmp_path: Path
) -> None:
    """Infinity strips twice: its request schema (fastapi_schemas/pydantic_v2.py INPUT_STRING,
    StringConstraints(strip_whitespace=True)) and sentence-transformers 3.4.1's
    Transformer.tokenize (`str(s).strip()`). sentence-transformers 6 keeps the whitespace."""
    out = tmp_path / "out"
    spec = f"http:url={infinity.embeddings_url},model=bpe,label=infinity"
    code = run(bpe_model, _texts(tmp_path, BPE_TEXTS), out, "sentence-transformers", spec)
    assert code == 1
    pair = json.loads((out / "summary.json").read_text())["pairs"][0]
    assert pair["failures"] == len(EDGE)  # an inner "\n" is kept by both sides
    [cause] = pair["causes"]
    assert (cause["cause"], cause["evidence"]) == ("strip", "measured")
    assert cause["indices"] == EDGE and cause["explained"] == len(EDGE)
    assert cause["detail"].startswith("infinity strips edge whitespace before tokenizing")
    assert cause["fix"] == (
        "apply strip before sentence-transformers too, or remove it from infinity's preprocessing"
    )
    assert "reproduced infinity on 3/3 texts" in cause["basis"]


@pytest.mark.slow
def test_infinity_errors_and_dimensions_are_passed_through(
    infinity: InfinityServer, tmp_path: Path, bpe_model: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = infinity.embeddings_url
    with AdapterSpec.parse(f"http:url={url},model=bpe,dimensions=16").build("") as adapter:
        vectors = adapter.embed(["hello", "world"])
    assert vectors.shape == (2, 16) and np.isfinite(vectors).all()
    with AdapterSpec.parse(f"http:url={url},model=bpe,dimensions=1000").build("") as adapter:
        with pytest.raises(AdapterError, match=r"answered 400: .*matryoshka_dim=1000 is not in"):
            adapter.embed(["hello"])
    line = one_line_error(capsys, tmp_path, bpe_model, f"http:url={url},model=nope")
    assert line.endswith(
        f"{url} answered 400: Invalid model: Engine for model name `nope` not found. "
        "Available model names are ['minilm', 'bpe']"
    )


# -- fix round: the key, the dimension, the protocol's options ------------------------------


def test_a_key_with_a_trailing_newline_is_stripped_and_sent(
    stub: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # before: h11 refused the header "Bearer <key>\n" and the one-line error held the key
    monkeypatch.setenv("PARITY_TEST_KEY", KEY + "\n")
    with AdapterSpec.parse(f"http:url={stub}/auth,api_key_env=PARITY_TEST_KEY").build("") as a:
        assert a.embed(["abc"]).tolist() == [[3.0, 1.0]]  # the stub answers 401 without it


def test_a_non_ascii_key_names_the_variable_never_the_value(
    stub: str, tmp_path: Path, bpe_model: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    monkeypatch.setenv("PARITY_TEST_KEY", "sk-ключ-secret")
    line = one_line_error(
        capsys, tmp_path, bpe_model, f"http:url={stub}/auth,api_key_env=PARITY_TEST_KEY"
    )
    assert line.endswith(
        "environment variable PARITY_TEST_KEY (api_key_env) holds a character that is not "
        "printable ASCII (an HTTP header cannot carry it); set it to the key alone"
    )
    assert "ключ" not in line and "secret" not in line and "cannot load a model" not in line


def test_a_key_the_server_echoes_is_masked_in_the_line_and_the_summary(
    stub: str, tmp_path: Path, bpe_model: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    monkeypatch.setenv("PARITY_TEST_KEY", KEY)
    spec = f"http:url={stub}/echo,api_key_env=PARITY_TEST_KEY"
    line = one_line_error(capsys, tmp_path, bpe_model, spec)
    assert line.endswith(f"{stub}/echo answered 401: bad Bearer ***")
    assert not [
        p for p in tmp_path.rglob("*") if p.is_file() and KEY in p.read_text(errors="ignore")
    ]


def test_vectors_that_change_length_between_requests_are_one_exit_2_line(
    stub: str, tmp_path: Path, bpe_model: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # batch_size=1: the runner calls embed() once per text, and the server alternates 2 and 3
    # dimensions; before, the runner's array assignment raised ValueError (exit 3)
    line = one_line_error(capsys, tmp_path, bpe_model, f"http:url={stub}/alternating,batch_size=1")
    assert re.search(
        rf"{stub}/alternating returned vectors of [23] dimensions after vectors of [23] earlier "
        r"in this run; did the server switch models or settings mid-run\?$",
        line,
    ), line
    # and within one embed() call, across its two batches
    with AdapterSpec.parse(f"http:url={stub}/alternating,batch_size=1").build("") as adapter:
        with pytest.raises(AdapterError, match=r"returned vectors of \d dimensions after"):
            adapter.embed(["a", "b"])


def test_an_item_without_an_index_among_indexed_ones_is_an_error(stub: str) -> None:
    with AdapterSpec.parse(f"http:url={stub}/partial").build("") as adapter:
        with pytest.raises(AdapterError) as error:
            adapter.embed(["a", "bb"])
    assert str(error.value).endswith(
        f'{stub}/partial response item 0 has no integer "index" while others do; cannot tell '
        "which text each vector belongs to"
    )


def test_options_the_protocol_never_sends_are_refused_at_parse_time() -> None:
    with pytest.raises(SpecError, match=r"^http: normalize= and truncate= are sent only with "):
        AdapterSpec.parse("http:url=http://127.0.0.1:1/embeddings,normalize=false")
    with pytest.raises(SpecError, match=r"^http: normalize= and truncate="):
        AdapterSpec.parse("http:url=http://127.0.0.1:1/embeddings,protocol=openai,truncate=true")
    with pytest.raises(SpecError, match=r"^http: dimensions= is sent only with protocol=openai"):
        AdapterSpec.parse("http:url=http://127.0.0.1:1/embed,protocol=tei,dimensions=64")
    AdapterSpec.parse("http:url=http://127.0.0.1:1/embed,protocol=tei,normalize=false")
    AdapterSpec.parse("http:url=http://127.0.0.1:1/embeddings,dimensions=64")
