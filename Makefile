# Every target sets itself up: a fresh clone needs only python3 (3.10+).
PYTHON ?= python3
VENV ?= .venv
PORT ?= 8000
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

export PORT
ifdef REDIS_URL
export REDIS_URL
endif

.PHONY: install test lint format bench docs demo clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[test,bench,docs,uwsgi]"
	touch $(STAMP)

install: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

test: lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: $(STAMP)
	@for script in benchmarks/bench_*.py; do \
		echo "== $$script"; \
		$(BIN)/python -m cache_tools.testing run -- $(BIN)/python $$script || exit 1; \
	done

docs: $(STAMP)
	$(BIN)/sphinx-build -W --keep-going -q -b html docs docs/_build/html
	@echo "docs built in docs/_build/html/index.html"

demo: $(STAMP)
	$(BIN)/python -m cache_tools.testing run -- sh -c '\
		$(BIN)/python manage.py migrate --noinput && \
		echo "Serving the test project on http://127.0.0.1:$(PORT)/" && \
		exec $(BIN)/python manage.py runserver --noreload 127.0.0.1:$(PORT)'

clean:
	rm -rf $(VENV) .venv-* docs/_build .pytest_cache .ruff_cache .hypothesis testproject/db.sqlite3
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
