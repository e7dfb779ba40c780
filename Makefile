# droptune: `make run` serves the API and one worker; `make test` runs the whole suite.
# Both install everything first, into .venv, from the lock file.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin

.PHONY: install run api worker test test-jax test-fast test-unit test-e2e lint bench lock migrate image clean

# Installs only when the lock files' content changed since the last install (scripts/install.sh
# compares hashes, so a copied checkout with newer file times is not reinstalled).
install:
	@PYTHON="$(PYTHON)" ./scripts/install.sh

run: install
	./scripts/run.sh

api: install
	$(BIN)/python -m service

worker: install
	$(BIN)/python -m tuner

migrate: install
	$(BIN)/python -m store.migrate

# pytest-xdist: tests spread over XDIST_WORKERS processes (one more than the CPUs: end-to-end tests
# spend much of their time waiting on servers, workers and frozen processes); tests that share a
# module's jobs or browser stay on one of them (see tests/conftest.py). XDIST_WORKERS=0 runs
# everything in this one process.
XDIST_WORKERS ?= $(shell echo $$(( $$(nproc) + 1 )))
XDIST := -n $(XDIST_WORKERS) --dist loadgroup

# The `backends` tests (packing, an end-to-end search with its verdict, predictions) again with Keras,
# the workers and the predictor on JAX (CPU wheels from requirements-jax.lock); JAX's compiled code is
# cached between the tests (and between runs) in .jax-test-cache.
JAX_ENV := KERAS_BACKEND=jax DROPTUNE_KERAS_BACKEND=jax JAX_COMPILATION_CACHE_DIR=$(CURDIR)/.jax-test-cache \
	JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS=0.1

# Everything: unit, end-to-end (real server, workers, browser) and container tests on TensorFlow,
# then the `backends` tests on JAX.
test: install
	./scripts/ensure-postgres.sh
	./scripts/ensure-chromium.sh
	./scripts/ensure-container-tools.sh
	$(BIN)/python -m pytest $(XDIST) $(PYTEST_ARGS)
	$(JAX_ENV) $(BIN)/python -m pytest $(XDIST) -m backends $(PYTEST_ARGS)

test-jax: install
	./scripts/ensure-postgres.sh
	$(JAX_ENV) $(BIN)/python -m pytest $(XDIST) -m backends $(PYTEST_ARGS)

# The inner loop: the unit tier only (no server, worker, browser or image), in a few minutes.
test-fast: install
	$(BIN)/python -m pytest $(XDIST) -m "not e2e and not container" tests/unit $(PYTEST_ARGS)

test-unit: test-fast

test-e2e: install
	./scripts/ensure-chromium.sh
	$(BIN)/python -m pytest $(XDIST) tests/e2e $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/mypy service store tuner models client/droptune_client
	./scripts/check-js.sh

# The Docker image, built with podman and runc from a local Debian base (see scripts/podman-image.sh).
image:
	./scripts/ensure-container-tools.sh
	./scripts/podman-image.sh localhost/droptune:latest

bench: install
	$(BIN)/python bench/service_vs_bare.py
	$(BIN)/python bench/network_vs_bare.py
	$(BIN)/python bench/pack_sizes.py
	$(BIN)/python bench/image_packing.py
	$(BIN)/python bench/parallel_trials.py
	$(BIN)/python bench/warm_start.py
	$(BIN)/python bench/memory_100_trials.py
	$(BIN)/python bench/api_throughput.py
	$(BIN)/python bench/api_load.py
	$(BIN)/python bench/csv_memory.py
	./scripts/ensure-chromium.sh
	$(BIN)/python bench/dashboard_1000.py

# Re-pin every dependency in scratch environments: the run-time set (what the image installs), then
# the test and lint tools on top of it.
lock:
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/pip install --quiet --upgrade pip
	.lock-venv/bin/pip install --quiet -r requirements.in
	(echo "# Pinned by 'make lock' from requirements.in: what the service and the worker run on (and the image installs)."; \
	 .lock-venv/bin/pip freeze --exclude-editable | grep -v '^pip==') > requirements.lock
	.lock-venv/bin/pip install --quiet -r requirements-dev.in -c requirements.lock
	(echo "# Pinned by 'make lock' from requirements-dev.in: test, browser-test, lint and type tools (with requirements.lock)."; \
	 .lock-venv/bin/pip freeze --exclude-editable | grep -v '^pip==' | grep -vxF -f requirements.lock) > requirements-dev.lock
	.lock-venv/bin/pip install --quiet -r requirements-jax.in -c requirements.lock
	(echo "# Pinned by 'make lock' from requirements-jax.in (with requirements.lock): the JAX backend's packages."; \
	 .lock-venv/bin/pip freeze --exclude-editable | grep -v '^pip==' | grep -vxF -f requirements.lock \
	 | grep -vxF -f requirements-dev.lock) > requirements-jax.lock
	# The GPU image's CUDA wheels are resolved, not installed (they are gigabytes, for another machine).
	.lock-venv/bin/pip install --quiet --dry-run --ignore-installed --report .lock-venv/cuda.json \
	  -r requirements-jax-cuda.in -c requirements.lock
	(echo "# Pinned from requirements-jax-cuda.in (with requirements.lock) by 'make lock': the GPU image's JAX packages."; \
	 .lock-venv/bin/python -c "import json; r = json.load(open('.lock-venv/cuda.json')); \
	 print('\n'.join(sorted(i['metadata']['name'] + '==' + i['metadata']['version'] for i in r['install'])))" \
	 | grep -vxF -f requirements.lock) > requirements-jax-cuda.lock
	rm -rf .lock-venv

clean:
	rm -rf $(VENV) .pytest_cache
