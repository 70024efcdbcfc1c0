# The two commands of the README. Both do all the set-up they need first.
.PHONY: setup local-up test lint unit integration

PY ?= python3

setup:
	./scripts/setup.sh

# The main job: control plane (+ cloudcore, an edge node, a demo as they land), until Ctrl-C.
local-up: setup
	keadm local-up

# The whole suite: lint, layering, types, unit, integration and end-to-end tests.
test: setup
	$(MAKE) --no-print-directory lint
	$(PY) -m pytest -q -ra

lint:
	$(PY) -m ruff check src tests bench
	$(PY) -c "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())"
	$(PY) -m mypy
