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

# A venv of its own for a real OpenStack service: $(1) the venv, $(2) its requirements file, $(3)
# the service, as the Python version check names it.
define service_venv
$(1)/.installed: $(2)
	@$$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "$(3) needs Python 3.11+"'
	$$(PYTHON) -m venv $(1)
	$(1)/bin/pip install -q --upgrade 'pip==26.3'
	$(1)/bin/pip install -q -r $(2)
	touch $(1)/.installed
endef

$(eval $(call service_venv,$(NOVA_VENV),tests/real_nova/requirements.txt,Nova 34))
nova-env: $(NOVA_INSTALLED)

$(eval $(call service_venv,$(CEILOMETER_VENV),tests/real_ceilometer/requirements.txt,Ceilometer 27))
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
