# The one task runner: the README's commands and CI call these targets.
.PHONY: run test lint bootstrap bootstrap-dev services eval

run: bootstrap  ## the web console on http://127.0.0.1:8000 (indexes the example handbook first if needed)
	.venv/bin/lore serve

test: bootstrap-dev services  ## the whole test suite, evals included
	.venv/bin/ruff check .
	.venv/bin/lint-imports
	.venv/bin/mypy
	.venv/bin/pytest

bootstrap:
	scripts/bootstrap

bootstrap-dev:
	scripts/bootstrap dev

services:
	scripts/services
