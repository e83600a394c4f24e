# jupyterhub-streamlit: two commands do all the set-up on a fresh machine.
#   make run    start the hub on http://127.0.0.1:8000 (local mode, demo users and app)
#   make test   install everything and run the test suite
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
CHP := node_modules/.bin/configurable-http-proxy
STAMP := $(VENV)/.installed

.PHONY: install run test test-fast bench soak clean

install: $(STAMP) $(CHP)

$(STAMP): setup.cfg constraints.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade 'pip>=24'
	$(PY) -m pip install -q -c constraints.txt -e '.[hub,app,test]'
	touch $@

$(CHP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

run: install
	$(VENV)/bin/jupyterhub -f hub_config/jupyterhub_config.py

test: install
	$(PY) -m pytest -p no:cacheprovider

test-fast: install
	$(PY) -m pytest -p no:cacheprovider -m "not integration and not browser"

bench: install
	$(PY) -m bench

# Opt-in load: 200 viewers for 5 minutes on 3 apps (not part of make test).
soak: install
	$(PY) -m bench.soak

clean:
	rm -rf $(VENV) node_modules .hub-data test-output
