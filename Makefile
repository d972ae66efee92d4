# One-command set-up, demo and tests. Everything installs into .venv/ from pyproject.toml.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEMO ?= data_demo

.PHONY: install demo test bench clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[test]'
	touch $(STAMP)

test: install
	$(VENV)/bin/pytest

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
