"""`http`: an embedding server over HTTP (OpenAI-style `/embeddings` or TEI's `/embed`), via httpx."""

from __future__ import annotations

import math
import os
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ClassVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from parity.adapters.base import Adapter, Option, parse_bool, parse_positive_int
from parity.errors import AdapterError, SpecError

ERROR_TEXT_CHARS = 200  # the server's error text is cut to this in the one-line error
# query keys that carry a credential: refused in url= and dropped from what describe() records
SECRET_QUERY = re.compile(r"key|token|secret|password|passwd|auth|signature|sig|credential", re.I)
BACKOFF_BASE = 0.5  # seconds before the first retry; doubles per retry
BACKOFF_MAX = 8.0
RETRY_AFTER_MAX = 60.0
PROBE_TIMEOUT = 5.0  # seconds for the GETs that look up the served model and server version


def parse_url(raw: str) -> str:
    """An http(s) URL without credentials in it (they belong in an environment variable)."""
    url = raw.strip()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("expected the full endpoint, e.g. http://127.0.0.1:7997/embeddings")
    if parts.username or parts.password or any(SECRET_QUERY.search(k) for k, _ in _query(url)):
        raise ValueError(
            "the URL carries a credential; put the key in an environment variable and "
            "name it with api_key_env=NAME"
        )
    return url


def parse_env_name(raw: str) -> str:
    name = raw.strip()
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise ValueError(
            "expected the NAME of an environment variable holding the key, not the key"
        )
    return name


def parse_seconds(raw: str) -> float:
    try:
        value = float(raw.strip())
    except ValueError:
        raise ValueError("expected a number of seconds") from None
    if not value > 0:
        raise ValueError("expected a positive number of seconds")
    return value


def parse_count(raw: str) -> int:
    if raw.strip() == "0":
        return 0
    try:
        return parse_positive_int(raw)
    except ValueError:
        raise ValueError("expected a whole number, 0 or more") from None


def _query(url: str) -> list[tuple[str, str]]:
    return parse_qsl(urlsplit(url).query, keep_blank_values=True)


def public_url(url: str) -> str:
    """`url` without user:password@ and without query parameters that look like credentials."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    if parts.port is not None:
        netloc += f":{parts.port}"
    query = urlencode([(k, v) for k, v in _query(url) if not SECRET_QUERY.search(k)])
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


class HttpAdapter(Adapter):
    """A served model: OpenAI-style `/embeddings` (OpenAI, vLLM, Infinity, Ollama's /v1, LiteLLM,
    TEI's /v1/embeddings) or TEI's native `/embed`. Opaque: no tokens, no stages, only vectors."""

    name = "http"
    summary = (
        "POST texts to an embedding server (protocol openai or tei); no model=: the one it lists"
    )
    requires = ("httpx",)
    install_hint = "pip install httpx"
    model_is_path = False  # model= is the served model name sent with each request
    distributions = ("httpx",)
    # never cached: a server can change what it serves behind the same URL and name, and it is
    # the thing under test
    cacheable = False
    options: ClassVar[dict[str, Option]] = {
        "url": Option(
            "",
            "the full endpoint (required; e.g. http:url=http://127.0.0.1:7997/embeddings)",
            parse_url,
            required=True,
        ),
        "protocol": Option("openai", "request/response format", choices=("openai", "tei")),
        "api_key_env": Option("", "NAME of the env var holding a Bearer key", parse_env_name),
        "batch_size": Option(32, "texts per request", int),
        "timeout": Option(60.0, "seconds to wait for each response", parse_seconds),
        "retries": Option(3, "retries on connection errors, 429 and 5xx", parse_count),
        "concurrency": Option(1, "requests in flight at once", int),
        "dimensions": Option(0, "openai: dimensions sent (0 = not sent)", parse_count),
        "normalize": Option(True, "tei: normalize sent", parse_bool),
        "truncate": Option(False, "tei: truncate sent", parse_bool),
    }

    def __init__(self, model: str, *, label: str | None = None, **config: Any) -> None:
        super().__init__(model, label=label, **config)
        if not self.config["url"]:
            raise SpecError(
                "adapter 'http' needs url=, the full endpoint "
                "(e.g. http:url=http://127.0.0.1:7997/embeddings)"
            )
        self.url: str = self.config["url"]
        self._server: dict[str, Any] | None = None
        self._served_model: str | None = None
        self._key = ""  # redacted from every message _error builds
        self._dim: int | None = None  # the first vector length seen: every later one must match
        self._dim_lock = threading.Lock()

    @classmethod
    def check_spec(cls, options: dict[str, str]) -> None:
        """Refuse options the chosen protocol never sends (they would be silently ignored)."""
        protocol = options.get("protocol", cls.options["protocol"].default)
        if protocol == "openai" and {"normalize", "truncate"} & set(options):
            raise SpecError(
                "http: normalize= and truncate= are sent only with protocol=tei (TEI's /embed); "
                "an OpenAI-style /embeddings request has no such fields: drop them"
            )
        if protocol == "tei" and "dimensions" in options:
            raise SpecError(
                "http: dimensions= is sent only with protocol=openai; parity sends TEI's /embed "
                "no such field: drop it"
            )

    def _load(self) -> None:
        import httpx

        headers = {}
        env = self.config["api_key_env"]
        if env:
            # stripped: a key pasted with its newline would make h11 refuse the header, and
            # its error text (retried, then reported) holds the whole header, key included
            key = os.environ.get(env, "").strip()
            if not key:
                raise AdapterError(
                    f"{self.label}: environment variable {env} (api_key_env) is not set or "
                    "empty; export it with the server's API key"
                )
            if not (key.isascii() and key.isprintable()):
                # never shown: only the variable's name and what is wrong with its value
                raise AdapterError(
                    f"{self.label}: environment variable {env} (api_key_env) holds a character "
                    "that is not printable ASCII (an HTTP header cannot carry it); set it to "
                    "the key alone"
                )
            self._key = key
            headers["Authorization"] = f"Bearer {key}"
        self.client = httpx.Client(timeout=self.config["timeout"], headers=headers)
        self.request_model = self.model or self._only_listed_model()

    def _close(self) -> None:
        self.client.close()

    def _embed(self, texts: list[str]) -> list[list[float]]:
        size = self.config["batch_size"]
        batches = [texts[i : i + size] for i in range(0, len(texts), size)]
        if self.config["concurrency"] == 1 or len(batches) == 1:
            results = [self._embed_batch(batch) for batch in batches]
        else:
            with ThreadPoolExecutor(self.config["concurrency"]) as pool:
                results = list(pool.map(self._embed_batch, batches))  # map keeps input order
        return [vector for batch in results for vector in batch]

    def _embed_batch(self, texts: list[str]) -> list[list[float]]:
        body: dict[str, Any]
        if self.config["protocol"] == "tei":
            body = {
                "inputs": texts,
                "normalize": self.config["normalize"],
                "truncate": self.config["truncate"],
            }
        else:
            body = {"input": texts, "encoding_format": "float"}
            if self.request_model:
                body["model"] = self.request_model
            if self.config["dimensions"]:
                body["dimensions"] = self.config["dimensions"]
        response = self._post(body)
        try:
            payload = response.json()
        except ValueError:
            raise self._error(
                f"answered {response.status_code} with a body that is not JSON: "
                f"{self._clip(response.text)}"
            ) from None
        if self.config["protocol"] == "tei":
            vectors = payload
        else:
            vectors = self._openai_vectors(payload)
        return self._checked(vectors, len(texts))

    def _post(self, body: dict[str, Any]) -> Any:
        """POST with retries on connection errors, 429 and 5xx (backoff, Retry-After honoured)."""
        import httpx

        retries = self.config["retries"]
        for attempt in range(retries + 1):
            last = attempt == retries
            try:
                response = self.client.post(self.url, json=body)
            except httpx.TimeoutException as exc:
                if isinstance(exc, httpx.ConnectTimeout) and not last:
                    time.sleep(_backoff(attempt, None))
                    continue
                raise self._error(
                    f"no answer within {self.config['timeout']:g} s ({type(exc).__name__}); "
                    "raise timeout= or lower batch_size="
                ) from None
            except (httpx.NetworkError, httpx.RemoteProtocolError) as exc:
                # connect, read and write errors and a dropped connection are retried: an
                # embedding request changes nothing on the server, so sending it twice is safe
                if not last:
                    time.sleep(_backoff(attempt, None))
                    continue
                raise self._error(
                    f"cannot reach the server after {retries + 1} attempt(s) "
                    f"({type(exc).__name__}: {self._clip(str(exc))}); is it running?"
                ) from None
            except httpx.TransportError as exc:  # the request itself cannot be sent: no retry
                raise self._error(
                    f"cannot send the request ({type(exc).__name__}: {self._clip(str(exc))})"
                ) from None
            status = response.status_code
            if (status == 429 or status >= 500) and not last:
                time.sleep(_backoff(attempt, response.headers.get("retry-after")))
                continue
            if status >= 400:
                tried = f" after {attempt + 1} attempts" if attempt else ""
                raise self._error(f"answered {status}{tried}: {self._clip(_error_text(response))}")
            return response
        raise AssertionError("unreachable")  # the last attempt returns or raises

    def _openai_vectors(self, payload: Any) -> list[Any]:
        data = payload.get("data") if isinstance(payload, dict) else None
        if not isinstance(data, list) or not all(isinstance(d, dict) for d in data):
            raise self._error(f'response has no "data" list of objects: {self._clip(str(payload))}')
        if isinstance(payload.get("model"), str) and payload["model"]:
            self._served_model = payload["model"]
        has_index = [isinstance(d.get("index"), int) for d in data]
        if any(has_index) and not all(has_index):
            raise self._error(
                f'response item {has_index.index(False)} has no integer "index" while others '
                "do; cannot tell which text each vector belongs to"
            )
        if all(has_index):
            indices = sorted(d["index"] for d in data)
            if indices != list(range(len(data))):
                raise self._error(f"response indices are not 0..{len(data) - 1}: {indices[:10]}")
            data = sorted(data, key=lambda d: d["index"])
        return [d.get("embedding") for d in data]

    def _checked(self, vectors: Any, n: int) -> list[list[float]]:
        """One vector per input, all of one length, every element a finite number."""
        if not isinstance(vectors, list):
            raise self._error(f"response is not a list of vectors: {self._clip(str(vectors))}")
        if len(vectors) != n:
            raise self._error(f"sent {n} texts, got {len(vectors)} vectors back")
        for i, vector in enumerate(vectors):
            if not isinstance(vector, list) or not vector:
                raise self._error(f"vector {i} is not a list of numbers: {self._clip(str(vector))}")
            if len(vector) != len(vectors[0]):
                raise self._error(
                    f"vectors differ in length: #0 has {len(vectors[0])}, #{i} has {len(vector)}"
                )
            if not all(
                isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)
                for x in vector
            ):
                raise self._error(f"vector {i} holds a value that is not a finite number")
        self._same_dimension(len(vectors[0]))
        return vectors

    def _same_dimension(self, dim: int) -> None:
        """The first batch's vector length, or an error: the runner stacks every batch's
        vectors into one array, and a server that changes length mid-run serves two models."""
        with self._dim_lock:
            if self._dim is None:
                self._dim = dim
        if dim != self._dim:
            raise self._error(
                f"returned vectors of {dim} dimensions after vectors of {self._dim} earlier in "
                "this run; did the server switch models or settings mid-run?"
            )

    def _clip(self, text: str) -> str:
        """Server or transport text for a message: the key masked first, then cut."""
        return _cut(self._redact(text))

    def _redact(self, text: str) -> str:
        return text.replace(self._key, "***") if self._key else text

    def _error(self, what: str) -> AdapterError:
        # proxies and servers echo the Authorization header: never let the key through
        return AdapterError(self._redact(f"{self.label}: {public_url(self.url)} {what}"))

    def _get_json(self, url: str) -> Any:
        """GET url and its JSON, or None on any failure (used only to describe the server)."""
        import httpx

        try:
            response = self.client.get(url, timeout=PROBE_TIMEOUT)
            return response.json() if response.status_code == 200 else None
        except (httpx.HTTPError, ValueError):
            return None

    def _only_listed_model(self) -> str:
        """openai without model=: the one model GET {base}/models lists, else none is sent."""
        if self.config["protocol"] != "openai":
            return ""
        listed = self._get_json(self.url.rsplit("/", 1)[0] + "/models")
        data = listed.get("data") if isinstance(listed, dict) else None
        if isinstance(data, list) and len(data) == 1 and isinstance(data[0], dict):
            return str(data[0].get("id") or "")
        return ""

    def server(self) -> dict[str, Any]:
        """The server's name, version and model as its API exposes them: TEI's GET /info,
        vLLM's GET /version, a FastAPI server's (Infinity's) /openapi.json `info`."""
        if self._server is not None:
            return self._server
        parts = urlsplit(self.url)
        origin = urlunsplit((parts.scheme, parts.netloc, "", "", ""))
        found: dict[str, Any] = {"name": None, "version": None, "model": None}
        info = self._get_json(origin + "/info")
        if isinstance(info, dict) and "version" in info:
            found = {
                "name": "text-embeddings-inference",
                "version": info.get("version"),
                "model": info.get("model_id"),
            }
        else:
            base = self.url.rsplit("/", 1)[0]
            for candidate in dict.fromkeys([base + "/openapi.json", origin + "/openapi.json"]):
                spec = self._get_json(candidate)
                if isinstance(spec, dict) and isinstance(spec.get("info"), dict):
                    found["name"] = spec["info"].get("title")
                    found["version"] = spec["info"].get("version")
                    break
            else:
                version = self._get_json(origin + "/version")
                if isinstance(version, dict):
                    found["version"] = version.get("version")
        self._server = found
        return found

    def _describe(self) -> dict[str, Any]:
        server = self.server()
        served = self._served_model or self.request_model or server["model"]
        described: dict[str, Any] = {
            "url": public_url(self.url),
            "protocol": self.config["protocol"],
            "served_model": served or None,
            "server": server["name"],
            "server_version": server["version"],
            "device": None,  # the server's, not ours; tokenizer, pooling, ... stay None: opaque
        }
        if self.config["protocol"] == "tei":
            described["normalize"] = self.config["normalize"]
        return described


def _backoff(attempt: int, retry_after: str | None) -> float:
    if retry_after:
        try:
            return min(max(float(retry_after), 0.0), RETRY_AFTER_MAX)
        except ValueError:
            pass  # an HTTP date: fall back to our own backoff
    return min(BACKOFF_BASE * 2**attempt, BACKOFF_MAX)


def _error_text(response: Any) -> str:
    """The server's own error message: OpenAI/Infinity {"error": {"message"}}, TEI {"error"},
    FastAPI {"detail"}; else the body as sent."""
    try:
        payload = response.json()
    except ValueError:
        return str(response.text).strip() or response.reason_phrase
    if isinstance(payload, dict):
        error = payload.get("error", payload.get("detail"))
        if isinstance(error, dict) and "message" in error:
            return str(error["message"])
        if error is not None:
            return str(error)
    return str(payload)


def _cut(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= ERROR_TEXT_CHARS else text[: ERROR_TEXT_CHARS - 3] + "..."
