# The one task runner: the README's commands and CI call these targets.
.PHONY: run test lint bootstrap bootstrap-dev services eval deploy-check

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
	scripts/bootstrap dev,train

services:
	scripts/services

deploy-check: bootstrap-dev  ## validate deploy/ offline (also part of `make test`, in tests/deploy)
	.venv/bin/check-jsonschema --builtin-schema vendor.compose-spec deploy/compose.yaml
	.venv/bin/kubernetes-validate --strict --quiet $(filter-out %/kustomization.yaml,$(wildcard deploy/k8s/*.yaml))
	.venv/bin/hadolint --failure-threshold info deploy/Dockerfile
	.venv/bin/python scripts/env_example.py --check deploy/.env.example
