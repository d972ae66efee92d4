# One-command set-up, demo and tests. Everything installs into .venv/ from pyproject.toml.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEMO ?= data_demo

.PHONY: install demo test bench clean browser

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[test]'
	touch $(STAMP)

test: install browser
	$(VENV)/bin/pytest

# Headless Debian chromium for the report's browser test; without it (no root, no apt) that test skips.
browser:
	@command -v chromium >/dev/null 2>&1 || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) \
		|| echo "chromium could not be installed: tests/test_report_browser.py will skip its browser check"

demo: install
	$(VENV)/bin/featstore demo-data $(DEMO)
	$(VENV)/bin/featstore extract --model pixels --data $(DEMO)
	$(VENV)/bin/featstore ls
	$(VENV)/bin/probes fit --features pixels --head logistic
	$(VENV)/bin/probes fit --features pixels --head mlp --final
	$(VENV)/bin/probes runs
	$(VENV)/bin/probes evaluate
	$(VENV)/bin/probes submit --out submission.csv
	@echo "demo done: submission.csv; plots in the newest runs/<id>/ folder (confusion-val.png, per-class-val.png)"

bench: install
	$(PY) bench/extract.py
	$(PY) bench/probe_fit.py

clean:
	rm -rf $(VENV) cache runs $(DEMO) .pytest_cache
