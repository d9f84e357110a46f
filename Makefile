# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# apt-get needs root: sudo unless make already runs as root
SUDO   := $(shell test "$$(id -u)" -eq 0 || echo sudo)

.PHONY: demo test lint typecheck pytest bench lock clean

$(STAMP): pyproject.toml requirements.lock requirements-peers.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.lock
	# peers whose metadata pins clash with ours; the parts the tests run need only the lock above
	$(BIN)/python -m pip install --quiet --no-deps -r requirements-peers.lock
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	# the report's test renders the page in Debian's chromium (Playwright drives it; no download)
	command -v chromium >/dev/null 2>&1 || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq chromium; }
	touch $(STAMP)

# A transactive day: 1,000 homes on case33bw, baseline against the 5-minute double auction with
# the DSO's check; prints the summary and where the report is.
demo: $(STAMP)
	$(BIN)/transactive run default --out results/default

test: lint typecheck pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	$(BIN)/pytest -q -n 2

bench: $(STAMP)
	for f in benchmarks/bench_*.py; do $(BIN)/python $$f || exit 1; done

# Re-pin the lock file from a fresh environment after changing pyproject.toml.
lock:
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/python -m pip install --quiet --upgrade pip
	.lock-venv/bin/python -m pip install --quiet -e '.[dev]' hatchling editables
	.lock-venv/bin/python -m pip freeze --exclude-editable | grep -v '^transactive' > requirements.lock
	rm -rf .lock-venv

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
