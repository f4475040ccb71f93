# The two commands of README.md: `make run` and `make test`. Each sets up what it needs
# (a virtual environment in .venv with the project installed) and skips what is done.

PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

WEB_STAMP := web/node_modules/.installed-$(shell cat web/package-lock.json | cksum | cut -d' ' -f1)

.PHONY: run test check wheel bench clean browser fuzz

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "kefu needs Python 3.11 or newer")'
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet -e '.[test]'
	rm -f $(VENV)/.installed-*
	touch $@

# Browser libraries for the web pages (ECharts), exactly as web/package-lock.json says.
$(WEB_STAMP): web/package-lock.json
	cd web && npm ci --no-audit --no-fund --loglevel=error
	rm -f web/node_modules/.installed-*
	touch $@

# Debian's Chromium (driven by Playwright in the tests) and a CJK font for its screenshots;
# skipped when both are there.
browser:
	@if ! command -v chromium >/dev/null 2>&1 || ! fc-list 2>/dev/null | grep -qi wqy; then \
		if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium fonts-wqy-microhei; \
	fi

run: $(STAMP) $(WEB_STAMP)
	$(VENV)/bin/kefu serve

test: $(STAMP) $(WEB_STAMP) browser
	$(VENV)/bin/python -m pytest

# The static checks `make test` runs too (tests/test_static_checks.py): strict mypy over the package
# as installed (kefu/<sub> linked to each folder of pyproject's package-dir), ruff's lint and format.
MYPY_TREE := build/mypy-tree
check: $(STAMP)
	rm -rf $(MYPY_TREE) && mkdir -p $(MYPY_TREE)/kefu
	$(VENV)/bin/python -c 'import tomllib, pathlib; dirs = tomllib.load(open("pyproject.toml", "rb"))["tool"]["setuptools"]["package-dir"]; [pathlib.Path("$(MYPY_TREE)", *name.split(".")).symlink_to(pathlib.Path(folder).resolve()) for name, folder in dirs.items()]'
	cd $(MYPY_TREE) && $(CURDIR)/$(VENV)/bin/mypy --strict --config-file $(CURDIR)/pyproject.toml --cache-dir $(CURDIR)/.mypy_cache -p kefu
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# A wheel in dist/ that serves every page: setup.py copies the browser libraries of web/vendor.json
# into it from web/node_modules (or, if that is not the lock's, from a fresh `npm ci`).
wheel: $(STAMP) $(WEB_STAMP)
	rm -rf build/lib  # setuptools never removes what an earlier build left there
	$(VENV)/bin/python -m pip wheel --quiet --no-deps -w dist .

# The benchmark suite at modest sizes (a few minutes): kefu beside its baselines, the store and
# routing benchmarks; results in loadtest/results/. Bigger runs: BENCH_ARGS='...' (see docs/benchmarks.md).
BENCH_ARGS ?=
bench: $(STAMP)
	mkdir -p loadtest/results
	$(VENV)/bin/python -m kefu.loadtest.bench_suite --json loadtest/results/bench.json \
		--markdown loadtest/results/bench.md $(BENCH_ARGS)

# Coverage-guided fuzzing of the decoders with atheris (tests/fuzz/), bounded in time; a crash
# leaves its input as crash-<sha1> here. `make fuzz FUZZ_SECONDS=600` for a longer run.
FUZZ_SECONDS ?= 60
fuzz: $(STAMP)
	$(VENV)/bin/python -m pip install --quiet -e '.[fuzz]'
	$(VENV)/bin/python -m tests.fuzz.fuzz_decoders -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=2048 build/fuzz-corpus

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis .mypy_cache .ruff_cache build dist web/node_modules
