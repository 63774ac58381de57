# Set-up is implicit: every target creates .venv when missing and installs the
# pinned dependencies (constraints.txt) before running.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
WORKDIR ?= demo-run
NOTEBOOK_HTML ?= build/notebooks

.PHONY: demo test lint format bench clean notebooks

$(BIN)/.installed: pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt torch==2.13.0
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev,notebooks]'
	touch $@

demo: $(BIN)/.installed
	$(BIN)/nowcast demo --workdir $(WORKDIR)

test: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

lint: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(BIN)/.installed
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# The jupytext sources notebooks/0*.py -> notebooks/0*.ipynb (git-ignored), executed to HTML
# in $(NOTEBOOK_HTML). They read what `make demo` writes (../demo-run/ seen from notebooks/).
# One notebook that fails does not stop the others: it is rendered again with its errors
# shown (--allow-errors), named at the end, and the target fails (notebooks/README.md).
notebooks: $(BIN)/.installed
	$(BIN)/jupytext --to ipynb notebooks/0*.py
	@failed=""; for nb in notebooks/0*.ipynb; do \
	  echo "$(BIN)/jupyter nbconvert --execute --to html --output-dir $(NOTEBOOK_HTML) $$nb"; \
	  $(BIN)/jupyter nbconvert --execute --to html --output-dir $(NOTEBOOK_HTML) "$$nb" || { \
	    failed="$$failed $$nb"; \
	    $(BIN)/jupyter nbconvert --execute --allow-errors --to html \
	      --output-dir $(NOTEBOOK_HTML) "$$nb"; }; \
	done; \
	if [ -n "$$failed" ]; then \
	  echo "make notebooks: FAILED:$$failed (their pages in $(NOTEBOOK_HTML) show the errors)"; \
	  exit 1; fi

bench: $(BIN)/.installed
	for f in benchmarks/*.py; do $(BIN)/python $$f || exit 1; done

clean:
	rm -rf $(WORKDIR) .pytest_cache .ruff_cache
