# The one task runner: the README's commands and CI call these targets.
.PHONY: run test lint bootstrap bootstrap-dev services eval

QUESTION ?= How do I set up the VPN on my laptop?

run: bootstrap  ## index the example handbook and answer a question
	.venv/bin/lore index
	.venv/bin/lore ask "$(QUESTION)"

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
