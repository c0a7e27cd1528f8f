# The two commands of the README. Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: up up-cluster test test-fast test-slow test-cluster chaos chaos-cluster lint install clean

$(STAMP): pyproject.toml contracts/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ./contracts -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

up: $(STAMP)
	$(BIN)/vss up

# The production topology on this machine (deploy/README.md): three NATS nodes, every store
# on PostgreSQL, two case API processes. Not a set-up step: `make up` is the default.
up-cluster: $(STAMP)
	$(BIN)/vss up --cluster

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports

test: lint
	$(BIN)/python -m pytest -q -m "not slow" --durations=20

# The long fault and topology runs (marker slow): supervision under kill -9, the three-node
# cluster and the production topology, sharing killed at random moments. About 3 minutes.
test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

# The unit tier only: no server, no socket, no file (seconds, not minutes).
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q tests/unit

# The relay and a consumer on a three-node NATS cluster whose stream leader is killed
# (tests/bus/test_cluster.py; also part of `make test`).
test-cluster: $(STAMP)
	$(BIN)/python -m pytest -q tests/bus/test_cluster.py

# The chaos suite (tests/chaos): realistic load over HTTP while every part of `vss up` and its
# nats-server are SIGKILLed at random, then the checks and their figures. VSS_CHAOS_MINUTES
# (default 10), VSS_CHAOS_SEED (printed), VSS_CHAOS_CLIENTS; not part of `make test`.
chaos: $(STAMP)
	$(BIN)/python -m pytest -m chaos -s -q tests/chaos

# The chaos suite on the production topology (`vss up --cluster`): also a nats-server node at
# random, the node leading the case stream, PostgreSQL and both case API processes killed.
chaos-cluster: $(STAMP)
	VSS_CHAOS_TOPOLOGY=cluster $(BIN)/python -m pytest -m chaos -s -q tests/chaos

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
