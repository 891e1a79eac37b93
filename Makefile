# Two entry points (README): `make demo` and `make test`. Both install first.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
CORES  ?= 2
# the demo's outputs: config.yaml's `results` (results/demo); a paper run keeps its own (results/paper)
# malloc backs large tensors by huge pages (workflow/prior_landscape/jobenv.py; Snakemake's jobs get it from
# common.smk): here for the test suite's own process
export GLIBC_TUNABLES ?= glibc.malloc.hugetlb=1
RESULTS ?= $(shell sed -n 's/^results: *\([^ #]*\).*/\1/p' config.yaml)

.PHONY: install demo report test lint format benchmark clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml envs/requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade-strategy only-if-needed -e '.[test]'
	touch $@

# The main job on the embedded default (config.yaml): offline, CPU.
demo: install
	$(BIN)/snakemake --cores $(CORES) all
	$(BIN)/snakemake --report $(RESULTS)/report.html

report: install
	$(BIN)/snakemake --report $(RESULTS)/report.html

test: install
	$(BIN)/python -m pytest

# The house style: ruff, snakefmt and snakemake --lint (tests/test_lint.py; `make test` and CI run it too).
lint: install
	$(BIN)/python -m pytest -q tests/test_lint.py

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .
	$(BIN)/snakefmt Snakefile workflow/rules

benchmark: install
	$(BIN)/python benchmarks/potential_engine.py --results $(RESULTS)

# the demo's outputs only: another configuration's results (results/paper) and Snakemake's
# metadata of them stay
clean:
	rm -rf $(RESULTS)
