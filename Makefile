# topup-sim: every target creates .venv on first use and installs the pinned packages into it,
# so on a fresh machine `make demo` or `make test` is the only command needed.

# The interpreter .venv is made with: Debian's own python3 when it is 3.11 or newer and can make
# a venv (Debian builds it with profile-guided and link-time optimisation, statically linked: the
# simulation runs faster on it than on pyenv's default build, docs/performance.md, "The
# interpreter"), else the first python3 on PATH. `make PYTHON=...` chooses another.
SYSTEM_PYTHON := /usr/bin/python3
PYTHON ?= $(shell $(SYSTEM_PYTHON) -c 'import sys, ensurepip, venv; \
	sys.exit(sys.version_info < (3, 11))' 2>/dev/null && echo $(SYSTEM_PYTHON) || echo python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test notebooks nbval review review-data proptest mutation bench lint format \
	lock clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check \
		-c constraints.txt -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

## demo: the main job on embedded defaults: the baseline month (1,000 users) and its summary
demo: $(STAMP)
	$(BIN)/python -m sim run scenarios/baseline.toml --backend memory

## test: lint, format check, the whole test suite, then the notebooks under nbval
test: lint $(STAMP)
	$(BIN)/pytest
	$(MAKE) nbval

## nbval: re-run every notebook and compare each cell's text output with the committed one
nbval: $(STAMP)
	$(BIN)/pytest --nbval --nbval-current-env --nbval-sanitize-with notebooks/sanitize.cfg \
		notebooks/ -p no:cacheprovider

## notebooks: regenerate the notebooks' committed outputs (after a deliberate change)
notebooks: $(STAMP)
	$(BIN)/jupyter nbconvert --to notebook --execute --inplace notebooks/*.ipynb

## review: serve notebook 04 (the threshold review and its explorer) as a page without code, at
##   http://127.0.0.1:$(REVIEW_PORT)/ (Voilà; Ctrl-C stops it)
REVIEW_PORT ?= 8866
review: $(STAMP)
	$(BIN)/voila notebooks/04_threshold_review.ipynb --port=$(REVIEW_PORT) --no-browser \
		--Voila.ip=127.0.0.1

## review-data: run the threshold review's two sweeps (72 points) and save them in notebooks/data/
##   for notebook 04; decision scale by default (1,000 users x 30 days: the grid alone takes a
##   quarter of an hour or more on two cores, the heavy segment longer: docs/performance.md;
##   finished points are kept, so a rerun resumes). Smaller: make review-data
##   REVIEW_DATA="--users 40 --days 7". Then `make notebooks` to refresh 04's outputs.
REVIEW_DATA ?=
review-data: $(STAMP)
	$(BIN)/python -m sim.review_data $(REVIEW_DATA)

## proptest: the property, state-machine and fuzz tests with a long search (HYPOTHESIS_PROFILE=long):
##   over a million state-machine steps (the count is printed at the end), about half an hour
proptest: $(STAMP)
	HYPOTHESIS_PROFILE=long $(BIN)/pytest --timeout=0 -k "properties or fuzz or machine"

## mutation: mutation testing of sim/billing against tests/billing, then killed/survived per file
##   (slow, never part of `make test`; one file: make mutation MUTATE=sim/billing/pricing.py)
MUTATE ?=
# sim/billing/pricing.py -> mutmut's mutant-name globs 'sim.billing.pricing.x_*' (functions) and
# 'sim.billing.pricing.xǁ*' (methods); an __init__.py is named after its package.
MUTANT_GLOBS = $(foreach m,$(patsubst %.__init__,%,$(subst /,.,$(basename $(MUTATE)))),'$(m).x_*' '$(m).xǁ*')
mutation: $(STAMP)
	env -u REDIS_URL $(BIN)/mutmut run $(MUTANT_GLOBS)
	$(BIN)/python bench/mutation_summary.py $(MUTATE)

## bench: every benchmark; figures and ratios are recorded in docs/performance.md
##   (long: the decision grid alone, bench/sweep.py, runs 36 points x 1,000 users on 2 workers)
bench: $(STAMP)
	$(BIN)/python bench/billing.py
	$(BIN)/python bench/stores.py
	$(BIN)/python bench/stripe_emulator.py
	$(BIN)/python bench/topup.py
	$(BIN)/python bench/simulation.py --repeat 1
	$(BIN)/python bench/sweep.py
	$(BIN)/python bench/faults.py
	$(BIN)/python bench/crash_points.py
	$(BIN)/python bench/crash_multiprocess.py
	if command -v valgrind >/dev/null; then $(BIN)/python bench/instructions.py; \
	else echo "bench/instructions.py skipped: valgrind is not installed"; fi

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

## lock: re-resolve the newest allowed versions and pin them in constraints.txt
lock:
	rm -rf .venv-lock
	$(PYTHON) -m venv .venv-lock
	.venv-lock/bin/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	{ sed -n '1,2p' constraints.txt; .venv-lock/bin/pip freeze --exclude-editable; } > constraints.new
	mv constraints.new constraints.txt
	rm -rf .venv-lock

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
