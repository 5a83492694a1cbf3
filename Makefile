# The two commands the README promises: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint bench clean system-deps

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/monitord demo $(if $(DURATION),--duration $(DURATION))

# Real parts for the tests: Debian's mosquitto, influxdb and prometheus, installed when missing and we are root.
system-deps:
	@if ! { command -v mosquitto || [ -x /usr/sbin/mosquitto ]; } >/dev/null 2>&1 || ! command -v influxd >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto influxdb prometheus >/dev/null; \
	  else echo "install the Debian packages mosquitto, influxdb and prometheus (tests needing them are skipped)"; fi; \
	fi

test: $(STAMP) system-deps
	$(BIN)/ruff check monitord drivers rules simulators tests bench
	$(BIN)/mypy
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python bench/pipeline.py
	$(BIN)/python bench/rule_engine.py
	$(BIN)/python bench/replay.py
	PYTHONPATH=. $(BIN)/python bench/store.py

clean:
	rm -rf $(VENV) monitord-data .pytest_cache .mypy_cache .ruff_cache
