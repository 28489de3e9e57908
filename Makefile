# tal-search: `make demo` runs the whole pipeline, `make test` runs the test suite.
PYTHON ?= python3.11
VENV ?= .venv
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install constraints browser demo test test-fast lint bench clean

install: $(STAMP)

$(STAMP): pyproject.toml Makefile constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH_SPEC)
	$(PY) -m pip install -q -c constraints.txt -e '.[test,decord]'
	@touch $(STAMP)

# Pin what the current .venv holds (after an upgrade that passed make test); torch comes from TORCH_SPEC.
constraints: install
	@{ sed -n '1,2p' constraints.txt; $(PY) -m pip freeze --exclude-editable | \
	  grep -v -i -E '^(tal-search|torch|torchvision|nvidia-|triton|cuda-)[=-]'; } > constraints.txt.new
	@mv constraints.txt.new constraints.txt

demo: install
	$(VENV)/bin/talsearch demo

# Headless Chromium for the dashboard test (Debian package; skipped where apt or root is missing).
browser:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	  || echo "chromium not installed: the dashboard test will be skipped" >&2; }

test: install browser
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q --durations=15 -n 2 --dist loadgroup

test-fast: install
	$(PY) -m pytest -q -m "not slow"

lint: install
	$(VENV)/bin/ruff check .

bench: install
	@for b in benchmarks/bench_*.py; do echo "== $$b" >&2; $(PY) $$b; done

clean:
	rm -rf demo_out .talsearch_cache mlflow.db ray_results
