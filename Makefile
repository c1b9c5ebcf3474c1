# Every target sets itself up: a fresh clone needs only python3 (3.11+).
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

.PHONY: install test lint format bench chaos package docs demo clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[test,bench,docs,uwsgi,asgi]"
	touch $(STAMP)

install: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

test: lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The chaos suite at full size (make test runs it reduced): 24 processes for 90 s.
chaos: $(STAMP)
	CACHE_TOOLS_CHAOS_SECONDS=90 CACHE_TOOLS_CHAOS_WORKERS=24 $(BIN)/python -m pytest -s tests/chaos

# Build the wheel and sdist, then install the wheel alone (not the working tree) into a fresh
# venv and run the test project's system checks with it, outside the source tree.
package: $(STAMP)
	rm -rf dist build .venv-package
	$(BIN)/python -m build --outdir dist . >/dev/null
	$(PYTHON) -m venv .venv-package
	.venv-package/bin/python -m pip install --quiet --disable-pip-version-check dist/*.whl
	tmp=$$(mktemp -d) && cp -r manage.py testproject $$tmp/ && cd $$tmp && \
		REDIS_URL=redis://127.0.0.1:1/0 $(CURDIR)/.venv-package/bin/python -c \
		"import cache_tools, pathlib; assert 'site-packages' in cache_tools.__file__, cache_tools.__file__; print('installed', cache_tools.__version__, 'from', pathlib.Path(cache_tools.__file__).parent)" && \
		REDIS_URL=redis://127.0.0.1:1/0 $(CURDIR)/.venv-package/bin/python manage.py check --fail-level WARNING && \
		rm -rf $$tmp
	tar tzf dist/*.tar.gz | sed 's|^[^/]*/||' | grep -E '^(tests|testproject|docs)/' && exit 1 || true
	@echo "dist/: $$(ls dist)"

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
		$(BIN)/python manage.py migrate --noinput -v 0 && \
		echo "Serving the test project under uWSGI (4 workers x 2 threads):" && \
		echo "  http://127.0.0.1:$(PORT)/demo/login         sign in as staff, then the dashboard" && \
		echo "  http://127.0.0.1:$(PORT)/                   dashboard (staff), herd buttons" && \
		echo "  http://127.0.0.1:$(PORT)/demo/compute/7     cache_aside (GET /demo/info for its stats)" && \
		echo "  http://127.0.0.1:$(PORT)/demo/things/name   lock_decorator fetch-then-create" && \
		echo "  http://127.0.0.1:$(PORT)/demo/stats/part    one calculation at a time" && \
		echo "  http://127.0.0.1:$(PORT)/demo/report        cache_view with stale" && \
		echo "  POST /demo/cache, GET /demo/cache/KEY      set on one worker, found on all" && \
		echo "Ctrl-C stops uWSGI and Redis." && \
		exec $(BIN)/uwsgi --ini testproject/uwsgi.ini'

clean:
	rm -rf $(VENV) .venv-* docs/_build .pytest_cache .ruff_cache .mypy_cache .hypothesis \
		testproject/db.sqlite3 build dist
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
