# The README's two commands: `make demo` (the main job) and `make test` (the test suite).
# Each does its own set-up: a virtual environment in .venv, the CPU torch pin first (a
# bare torch requirement would let pip pull a multi-GB CUDA build instead of the CPU wheel;
# docs/environment.md explains the machines), then the package with its test, data and
# docs extras. A stamp file skips the installs on re-runs until setup.cfg changes.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
TORCH_PIN := torch==2.13.0
# The slowest tests of each tier are listed at the end of its run (the CI budget).
PYTEST_ARGS ?= --durations=12

.PHONY: demo test test-fast lint format docs bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): setup.cfg pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH_PIN)
	$(BIN)/python -m pip install --quiet -e ".[test,data,docs]"
	# curvlinops: a test-only Hessian oracle (tests/test_flatness.py). Its declared
	# torchvision requirement would replace the CPU torch pin with a multi-GB CUDA build,
	# so it is installed without dependencies, plus the ones it imports.
	$(BIN)/python -m pip install --quiet --no-deps curvlinops-for-pytorch==3.0.1 einops einconv linear_operator opt_einsum
	touch $(STAMP)

# The main job: the quick reproduction of the paper's claims (report in reproduction/).
# Re-running it reuses what is already computed (--resume); delete reproduction/ to redo.
DEMO_ARGS ?= --preset quick
demo: $(STAMP)
	$(BIN)/nrnn reproduce $(DEMO_ARGS) --out reproduction --resume

lint: $(STAMP)
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# The slow tier includes tests/test_docs.py, which builds this documentation (warnings
# are errors, tutorials executed) and checks the built site.
test: lint
	$(BIN)/python -m pytest -m "not slow" --hypothesis-profile=ci $(PYTEST_ARGS)
	$(BIN)/python -m pytest -m slow --hypothesis-profile=ci $(PYTEST_ARGS)

test-fast: lint
	$(BIN)/python -m pytest -m "not slow" --hypothesis-profile=ci $(PYTEST_ARGS)

# The documentation site, into docs/_build/html: warnings are errors (-W, all of them
# reported: --keep-going), every cross-reference must resolve (-n), tutorials executed.
docs: $(STAMP)
	$(BIN)/python -m sphinx -b html -W --keep-going -n docs docs/_build/html

bench: $(STAMP)
	@for b in benchmarks/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .ruff_cache .hypothesis
	rm -rf docs/_build docs/api/generated
