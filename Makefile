# Entry points for people and CI. Host packages and the Python environment are installed on
# demand, so 'make image' and 'make test' work on a fresh Debian 12 machine (as root).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Extra arguments, e.g. make image ARGS="--distribution debian --linstor-source local:/srv/debs"
ARGS ?=
PYTEST_ARGS ?=
# Extra arguments for the benchmarks, e.g. make bench BENCH_ARGS="--runs 5 --only boot"
BENCH_ARGS ?=

.PHONY: all image test test-fast test-fast-unprivileged boot dist deb lint lint-deb host-deps venv clean bench \
	bench-quick

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

# The whole suite: the linters, unit tests, then the image builds, boot tests and the simulated cluster.
# lint runs first (host-deps installs shellcheck before it).
test: host-deps venv
	$(MAKE) --no-print-directory lint
	$(BIN)/pytest $(PYTEST_ARGS)

# Only what needs neither root nor a VM: seconds, not minutes. Tests that do need root (loop devices,
# mounts) skip without it.
test-fast: venv
	$(BIN)/pytest -m "not image and not boot and not package" $(PYTEST_ARGS)

# Proves the above (run as root): test-fast as the unprivileged user TEST_USER (created when missing),
# in a copy of this tree in its home with its own venv.
TEST_USER ?= linstor-test
test-fast-unprivileged:
	./tools/test-unprivileged $(TEST_USER)

# ruff, mypy --strict on the tool, and shellcheck on every shell script (found by shebang, templates
# rendered first). Needs no root; shellcheck comes with 'make host-deps'.
lint: venv
	$(BIN)/ruff check builder tests bench tools/lint-shell
	$(BIN)/mypy --strict builder
	$(BIN)/python tools/lint-shell
	@$(MAKE) --no-print-directory lint-deb

# One self-contained file for a Proxmox VE node: the tool, its templates, jinja2, markupsafe and
# python-linstor in a zipapp that the node's own python3 runs (no pip, no venv, no network).
dist: venv
	$(BIN)/python tools/make-dist dist/linstor-appliance.pyz

# The Debian package for Proxmox VE nodes, built with dpkg-buildpackage (debian/): the same tool, its
# templates, man pages and bash completion, python-linstor bundled, jinja2 from Debian. Same source, same bytes.
DEB_VERSION = $(shell dpkg-parsechangelog -SVersion)
deb: host-deps venv
	$(BIN)/python tools/make-deb dist

# lintian on the package: errors and warnings fail (the accepted ones are in debian/*.lintian-overrides).
lint-deb: deb
	lintian --allow-root --fail-on error,warning dist/linstor-appliance_$(DEB_VERSION)_all.deb

# Build, size, boot, image write and migration downtime against their baselines, measured on this
# machine (as root, tens of minutes): writes bench/results.json and docs/benchmarks.md.
bench: host-deps venv
	$(BIN)/python -m bench $(BENCH_ARGS)

# The same harness with the smallest settings, to prove it works; results go to out/bench-quick/.
bench-quick: host-deps venv
	$(BIN)/python -m bench --quick $(BENCH_ARGS)

clean:
	rm -rf $(VENV) out dist build *.egg-info
