# Entry points for people and CI. Host packages and the Python environment are installed on
# demand, so 'make image' and 'make test' work on a fresh Debian 12 machine (as root).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Extra arguments, e.g. make image ARGS="--distribution debian --linstor-source local:/srv/debs"
ARGS ?=
PYTEST_ARGS ?=

.PHONY: all image test test-fast boot dist lint host-deps venv clean

all: image

host-deps:
	@./tools/install-host-deps

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	@touch $@

venv: $(BIN)/.installed

image: host-deps venv
	$(BIN)/linstor-appliance build $(ARGS)

boot: host-deps venv
	$(BIN)/linstor-appliance boot $(ARGS) $(or $(IMAGE),out/linstor-controller.raw)

# The whole suite: unit tests, then the Debian image build, boot tests and the simulated cluster.
test: host-deps venv
	$(BIN)/ruff check builder tests
	$(BIN)/pytest $(PYTEST_ARGS)

# Only what needs neither root nor a VM: seconds, not minutes.
test-fast: venv
	$(BIN)/pytest -m "not image and not boot" $(PYTEST_ARGS)

lint: venv
	$(BIN)/ruff check builder tests

clean:
	rm -rf $(VENV) out dist build *.egg-info
