# One entry point for humans and CI. `make test` needs only python3 (3.11+) and, for the browser
# and compose tests, the Debian packages that `make system-deps` installs.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: venv upgrade-deps test lint system-deps up clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# Installs the exact versions in docker/constraints.txt, the ones the images run, so a new release
# upstream cannot change what CI tests. `make upgrade-deps` moves the pins on deliberately.
venv: $(BIN)/python
	$(BIN)/pip install --quiet -c docker/constraints.txt -e '.[dev]'

# The newest versions pyproject.toml allows, then new pins from them; run `make test` after it.
upgrade-deps: $(BIN)/python
	$(BIN)/pip install --quiet --upgrade --upgrade-strategy eager -e '.[dev]'
	scripts/freeze-constraints.sh

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# The whole suite: unit tests, real-MNIST learning tests, the service with a real redis-server and
# Celery worker, the dashboard in Chromium.
test: venv lint
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

# Debian/Ubuntu packages the full suite uses: redis-server, chromium, docker-compose (checks the compose
# files), jq and curl (the README examples).
system-deps:
	apt-get update -qq && apt-get install -y -qq redis-server chromium docker-compose jq curl >/dev/null

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info

# The local stack without Docker: redis-server (or the server already at FF_REDIS_URL), a worker,
# the API and the dashboard, their logs prefixed with the process name; Ctrl-C stops them all.
# The processes are in the Procfile; settings come from FF_* variables (or a .env file).
up: venv
	PATH="$(abspath $(BIN)):$$PATH" PYTHONUNBUFFERED=1 $(BIN)/honcho start
