# The two commands the README promises: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test fuzz lint bench clean system-deps catalogs

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/monitord demo $(if $(DURATION),--duration $(DURATION)) $(if $(LOCALE),--locale $(LOCALE))

# Real parts for the tests: Debian's mosquitto, influxdb, prometheus, prometheus-alertmanager, socat (serial pty pairs), and
# chromium with its driver and CJK fonts for the console's browser tests; installed when missing and we are root.
system-deps:
	@missing=""; \
	{ command -v mosquitto || [ -x /usr/sbin/mosquitto ]; } >/dev/null 2>&1 || missing="$$missing mosquitto"; \
	command -v influxd >/dev/null 2>&1 || missing="$$missing influxdb"; \
	command -v prometheus >/dev/null 2>&1 || missing="$$missing prometheus"; \
	command -v prometheus-alertmanager >/dev/null 2>&1 || missing="$$missing prometheus-alertmanager"; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	command -v chromedriver >/dev/null 2>&1 || missing="$$missing chromium-driver"; \
	[ -d /usr/share/fonts/opentype/noto ] || missing="$$missing fonts-noto-cjk"; \
	command -v socat >/dev/null 2>&1 || missing="$$missing socat"; \
	command -v openssl >/dev/null 2>&1 || missing="$$missing openssl"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing Debian packages:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else echo "missing Debian packages:$$missing (tests needing them are skipped)"; fi; \
	fi

test: $(STAMP) system-deps
	$(BIN)/ruff check monitord drivers rules simulators tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports
	@# Bytecode once, before the tests start their many monitord processes: with PYTHONDONTWRITEBYTECODE
	@# set (as on some CI machines) each would compile the package again, seconds each under load.
	$(BIN)/python -m compileall -q monitord drivers >/dev/null
	$(BIN)/python -m pytest -q

# The fuzz targets (tests/test_fuzz.py: MQTT payloads, Modbus replies, config files, API bodies) run
# 100 inputs each inside `make test`; here FUZZ_EXAMPLES each (minutes), with how many each ran.
FUZZ_EXAMPLES ?= 5000
fuzz: $(STAMP) system-deps
	MONITORD_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(BIN)/python -m pytest -q tests/test_fuzz.py --hypothesis-show-statistics

# Message catalogs (docs/i18n.md): extract every msgid (Python, Jinja2 templates, rule-pack summaries,
# profile state names; babel.cfg says where) into the template, then add new msgids to each locale's .po and drop dead ones.
# Translate what comes back empty in zh_CN; tests/test_i18n.py fails until every msgid is in both.
POT := monitord/locale/monitord.pot
catalogs: $(STAMP)
	$(BIN)/pybabel extract -F babel.cfg --no-wrap --sort-by-file --project monitord -o $(POT) .
	$(BIN)/pybabel update -i $(POT) -d monitord/locale -D monitord --no-wrap --ignore-obsolete --no-fuzzy-matching

bench: $(STAMP)
	$(BIN)/python bench/pipeline.py
	$(BIN)/python bench/rule_engine.py
	$(BIN)/python bench/replay.py
	PYTHONPATH=. $(BIN)/python bench/replay_influx.py
	PYTHONPATH=. $(BIN)/python bench/store.py
	PYTHONPATH=. $(BIN)/python bench/latency.py
	# the same trials while 10,000 lift messages/s flood the MQTT path
	PYTHONPATH=. $(BIN)/python bench/latency.py --load 10000
	$(BIN)/python bench/protocols.py
	PYTHONPATH=. $(BIN)/python bench/daemon.py
	PYTHONPATH=. $(BIN)/python bench/daemon.py --only modbus --pipeline 8 --devices 2400 --ports 48
	PYTHONPATH=. $(BIN)/python bench/daemon.py --only mqtt --qos 1
	# sustained gateway floods (40,000 messages, 5-13 s): the daemon's queues and RSS over a longer flood
	PYTHONPATH=. $(BIN)/python bench/daemon.py --only mqtt --no-single --messages 400000
	PYTHONPATH=. $(BIN)/python bench/daemon.py --only mqtt --no-single --messages 400000 --qos 1
	PYTHONPATH=. $(BIN)/python bench/mqtt_client.py
	$(BIN)/python bench/mqtt_drain.py
	$(BIN)/python bench/mqtt_drain.py --gateway
	PYTHONPATH=. $(BIN)/python bench/rtu.py
	PYTHONPATH=. $(BIN)/python bench/console.py
	PYTHONPATH=. $(BIN)/python bench/shard_facts.py
	PYTHONPATH=. $(BIN)/python bench/shard_link.py
	PYTHONPATH=. $(BIN)/python bench/takeover.py
	PYTHONPATH=. $(BIN)/python bench/alertmanager.py

clean:
	rm -rf $(VENV) monitord-data .pytest_cache .mypy_cache .ruff_cache
