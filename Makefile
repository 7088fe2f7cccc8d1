# phivault: `make run` (demo server) and `make test` (whole suite) work on a fresh machine.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
DEMO   := .demo
PATIENTS ?= 200
PORT   ?= 8080

.PHONY: venv run test lint bench clean-demo

$(BIN)/phivault: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $@

venv: $(BIN)/phivault

# A demo clinic of synthetic patients. The demo's key file is generated on this machine,
# for the demo only; real installations use PHIVAULT_PASSPHRASE or their own key file.
# The first run prints the demo logins (admin and clinician: generated password + TOTP).
run: venv
	@mkdir -p $(DEMO)
	@if [ ! -f $(DEMO)/data/keys.json ]; then \
	  $(BIN)/phivault init --data $(DEMO)/data --generate-key-file $(DEMO)/demo.key && \
	  echo "NOTE: $(DEMO)/demo.key is a key generated for this demo only." && \
	  $(BIN)/phivault demo --data $(DEMO)/data --key-file $(DEMO)/demo.key --patients $(PATIENTS) --seed 1; \
	fi
	@echo "Token for scripts: $(BIN)/phivault token issue --data $(DEMO)/data --key-file $(DEMO)/demo.key --client demo --scope 'system/*.rs'"
	$(BIN)/phivault serve --data $(DEMO)/data --key-file $(DEMO)/demo.key --port $(PORT)

test: venv
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy
	$(BIN)/pytest -q

lint: venv
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy

# Every safeguard on vs off, interleaved, on SQLite and PostgreSQL, next to the bare
# Starlette+SQLite ceiling, plus the component benches; see docs/PERFORMANCE.md.
BENCH_PG ?= postgresql://postgres@127.0.0.1:5432/test
BENCH_PATIENTS ?= 1000
bench: venv
	$(BIN)/phivault bench --patients $(BENCH_PATIENTS) --pg-url $(BENCH_PG) --components run

clean-demo:
	rm -rf $(DEMO)
