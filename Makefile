# Keel developer entry points. Every target works from a fresh clone.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

RUN_PG_PORT ?= 54329
RUN_REDIS_PORT ?= 63799
PORT ?= 8000

.PHONY: install run test bench lint services-up services-down clean

$(STAMP): requirements/base.txt requirements/dev.txt pyproject.toml connectors/examples/keel-shipbay/pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) not found"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements/dev.txt
	# The example third-party connector, installed the way an integrator's package would be.
	$(PY) -m pip install -q -e connectors/examples/keel-shipbay
	@touch $(STAMP)

install: $(STAMP)

# Web + Celery worker + beat against project-local PostgreSQL/Redis under .data/.
run: install
	./scripts/services.sh ensure-packages
	./scripts/services.sh start .data $(RUN_PG_PORT) $(RUN_REDIS_PORT)
	PORT=$(PORT) KEEL_PG_PORT=$(RUN_PG_PORT) KEEL_REDIS_PORT=$(RUN_REDIS_PORT) ./scripts/run.sh

services-down:
	./scripts/services.sh stop .data

test: install
	KEEL_NEED_BROWSER=1 ./scripts/services.sh ensure-packages
	./scripts/test.sh $(ARGS)

bench: install
	./scripts/services.sh ensure-packages
	./scripts/bench.sh $(ARGS)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

clean:
	-./scripts/services.sh stop .data
	rm -rf $(VENV) .data
