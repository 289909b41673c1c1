# radiod: `make serve` to listen, `make test` to prove it. Both set up everything they need.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.PHONY: install serve serve-cluster demo test lint format bench system-deps clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,dev]'
	touch $(STAMP)

install: $(STAMP)

serve: install
	$(BIN)/radiod serve --config config.toml

# nginx on 127.0.0.1:8080 in front of cluster.instances radiod instances (config.toml
# [cluster]); Ctrl-C stops them all. Each line of output is prefixed with its process.
serve-cluster: install system-deps
	$(BIN)/radiod cluster --config config.toml

demo: install
	$(BIN)/radiod demo

# Debian's Chromium drives the browser tests (Playwright never downloads a browser here);
# ffmpeg is the independent reader of our streams and the benchmarks' reference; nginx is
# the proxy of `make serve-cluster` and the cluster tests; iproute2 gives them `ip netns`.
# WebKitGTK's WebDriver (with Xvfb for its display, GStreamer's plugins to play MP3) runs
# the same scenarios in Safari's engine (tests/e2e_webkit); pipx proves `pipx install .`.
system-deps:
	@missing=""; \
	test -x /usr/bin/chromium || missing="$$missing chromium"; \
	command -v ffmpeg >/dev/null || missing="$$missing ffmpeg"; \
	command -v WebKitWebDriver >/dev/null || missing="$$missing webkit2gtk-driver"; \
	command -v Xvfb >/dev/null || missing="$$missing xvfb"; \
	for p in gstreamer1.0-plugins-good gstreamer1.0-plugins-ugly gstreamer1.0-libav; do \
	  dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; \
	done; \
	command -v pipx >/dev/null || missing="$$missing pipx"; \
	test -x /usr/sbin/nginx || command -v nginx >/dev/null || missing="$$missing nginx"; \
	test -x /usr/sbin/ip || command -v ip >/dev/null || missing="$$missing iproute2"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	  else \
	    echo "missing:$$missing; run: sudo apt-get install -y$$missing" >&2; exit 1; \
	  fi; \
	fi

test: install system-deps
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# The full runs take 10-30 minutes (sessions.py ramps 60 s steps); QUICK=1 a first look in minutes.
# sessions.py runs before latency.py, which loads the server to half the capacity it found.
bench: install system-deps
	$(BIN)/python bench/transcode.py $(if $(QUICK),--quick)
	$(BIN)/python bench/sessions.py $(if $(QUICK),--quick)
	$(BIN)/python bench/latency.py $(if $(QUICK),--quick)
	$(BIN)/python bench/audit.py
	$(BIN)/python bench/fanout.py $(if $(QUICK),,--all)
	$(BIN)/python bench/cluster.py $(if $(QUICK),,--full)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
