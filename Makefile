# aigc-edge: `make demo` runs the main job, `make test` the test suite. Both set up .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
FASHION_MNIST := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz
CHROMIUM := /usr/bin/chromium
export OMP_NUM_THREADS ?= 1
export RAY_USAGE_STATS_ENABLED := 0
# Ray 2.60 turns token auth on for new local clusters; say so, so CLI clients (job submit) use it too.
export RAY_AUTH_MODE ?= token

.PHONY: setup demo test test-fast ui clean

setup: $(STAMP) $(FASHION_MNIST) $(CHROMIUM)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch==2.13.0 is the CPU wheel on this machine's disk; ask for it first so nothing pulls a CUDA build.
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

# The generator's data set (MIT licence) comes from Debian; nothing is downloaded at run time.
$(FASHION_MNIST):
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  (apt-get install -y -q dataset-fashion-mnist || (apt-get update -q && apt-get install -y -q dataset-fashion-mnist)) >/dev/null; \
	else \
	  echo "note: Fashion-MNIST is missing; install it with: sudo apt-get install dataset-fashion-mnist"; \
	fi

# Headless Chromium for the demo page's browser test (tests/test_serving_app.py); Debian's package.
$(CHROMIUM):
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  (apt-get install -y -q chromium || (apt-get update -q && apt-get install -y -q chromium)) >/dev/null; \
	else \
	  echo "note: chromium is missing (the demo-page test is skipped); install it with: sudo apt-get install chromium"; \
	fi

demo: setup
	$(BIN)/python -m cluster.demo

test: setup
	$(BIN)/python -m pytest -q --timeout=900 --durations=15 tests

test-fast: setup
	$(BIN)/python -m pytest -q -m "not slow" tests

ui: setup
	$(BIN)/aigc-edge ui

clean:
	rm -rf $(VENV) .aigc-edge .pytest_cache
