# eventfed: `make demo` runs it, `make test` tests it. Every target installs what it needs.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed
PYTEST_ARGS ?=
# Real Nova for the real-Nova integration tests lives in its own venv: its pins clash with ours.
NOVA_VENV := .venv-nova
NOVA_INSTALLED := $(NOVA_VENV)/.installed
# Real Ceilometer 27 (metrics federation's source, and the bench's peer) in a venv of its own too.
CEILOMETER_VENV := .venv-ceilometer
CEILOMETER_INSTALLED := $(CEILOMETER_VENV)/.installed

.PHONY: install nova-env ceilometer-env up schema-registry down test unit integration helm-check lint demo bench soak clean

$(INSTALLED): pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "eventfed needs Python 3.11+"'
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade 'pip==26.3'
	$(VENV)/bin/pip install -q -c constraints.txt -e '.[dev]'
	touch $(INSTALLED)

install: $(INSTALLED)

$(NOVA_INSTALLED): tests/real_nova/requirements.txt
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Nova 34 needs Python 3.11+"'
	$(PYTHON) -m venv $(NOVA_VENV)
	$(NOVA_VENV)/bin/pip install -q --upgrade 'pip==26.3'
	$(NOVA_VENV)/bin/pip install -q -r tests/real_nova/requirements.txt
	touch $(NOVA_INSTALLED)

nova-env: $(NOVA_INSTALLED)

$(CEILOMETER_INSTALLED): tests/real_ceilometer/requirements.txt
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Ceilometer 27 needs Python 3.11+"'
	$(PYTHON) -m venv $(CEILOMETER_VENV)
	$(CEILOMETER_VENV)/bin/pip install -q --upgrade 'pip==26.3'
	$(CEILOMETER_VENV)/bin/pip install -q -r tests/real_ceilometer/requirements.txt
	touch $(CEILOMETER_INSTALLED)

ceilometer-env: $(CEILOMETER_INSTALLED)

up: install
	scripts/kafka start
	scripts/rabbitmq start

# Built once into .cache/, before the tests that start it (tests/support/registry.py): the build
# takes minutes, longer than a test should wait. The demo does not use it.
schema-registry:
	scripts/schema-registry fetch

down:
	-scripts/demo stop
	scripts/kafka stop
	scripts/rabbitmq stop

test: install nova-env ceilometer-env up schema-registry
	$(PY) -m pytest -m "not helm" $(PYTEST_ARGS)
	scripts/helm-check

unit: install
	$(PY) -m pytest -m "not integration and not helm" $(PYTEST_ARGS)

integration: install nova-env ceilometer-env up schema-registry
	$(PY) -m pytest -m integration $(PYTEST_ARGS)

helm-check: install up
	scripts/helm-check

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

demo: install up
	scripts/demo start

bench: install up
	$(PY) -m bench.run $(BENCH_ARGS)

# SOAK_MINUTES (default 10) under faults, with a Kafka and a RabbitMQ of its own on free ports;
# writes bench/results/soak.md and fails on any discrepancy.
soak: install
	$(PY) -m bench.soak

clean:
	rm -rf $(VENV) $(NOVA_VENV) $(CEILOMETER_VENV) .mypy_cache .ruff_cache .pytest_cache
