# The two commands of the README. Each does all set-up on a fresh Debian 12 machine.
.PHONY: demo test lint typecheck

demo:  ## migrate the Chinook demo MongoDB -> DynamoDB + PostgreSQL, validate, print the report
	scripts/demo.sh

test:  ## the whole test suite against the real local servers
	scripts/test.sh

lint:
	.venv/bin/ruff check etl tests bench scripts

typecheck:  ## mypy over etl, as `make test` runs it first (settings: [tool.mypy] in pyproject.toml)
	.venv/bin/mypy
