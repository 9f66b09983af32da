# The two commands a newcomer types: `make demo` and `make test`. Each installs what it needs
# into .venv (Python 3.11-3.13; PYTHON=python3.12 make test picks another interpreter).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test lint checkov unit bench clean sam-validate mutation

$(STAMP): requirements-dev.txt layers/common/requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check --require-hashes -r requirements-dev.txt
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/s3-vendor-import demo

lint: $(STAMP) checkov
	$(BIN)/ruff check .
	$(BIN)/cfn-lint template.yaml

# checkov (security and least-privilege checks of template.yaml) in its own venv: its pins clash
# with the dev venv's. Every skipped check has its reason in the resource's Metadata.
CHECKOV_STAMP := .venv-checkov/.installed

$(CHECKOV_STAMP):
	$(PYTHON) -m venv .venv-checkov
	.venv-checkov/bin/pip install --quiet --disable-pip-version-check checkov==3.3.30
	touch $(CHECKOV_STAMP)

# checkov does not expand Fn::ForEach: it reads the template with the vendor loop expanded.
checkov: $(STAMP) $(CHECKOV_STAMP)
	$(BIN)/python -m local.language_extensions template.yaml out/template.expanded.json
	.venv-checkov/bin/checkov -f out/template.expanded.json --framework cloudformation --quiet --compact --skip-download

# -n auto: one pytest worker per core (pytest-xdist); every test is independent of the others' order.
test: lint
	$(BIN)/python -m pytest -q -n auto

bench: $(STAMP)
	$(BIN)/python bench/run_all.py

# Mutation testing (mutmut, pinned in requirements-dev.txt) of logic/, polling, pace and the record
# readers/cursors; prints the score and the surviving mutants (explained in docs/mutation.md).
# Not part of `make test`. MUTATION_SCOPE=polling.py make mutation runs one file.
mutation: $(STAMP)
	$(BIN)/python bench/mutation.py

clean:
	rm -rf $(VENV) .venv-checkov .venv-sam out .pytest_cache .ruff_cache

# `sam validate --lint` (what cfn-lint in `make lint` checks, through the SAM CLI) in its own venv:
# aws-sam-cli is heavy and not needed by the tests. Works offline.
.venv-sam/bin/sam:
	$(PYTHON) -m venv .venv-sam
	.venv-sam/bin/pip install --quiet --disable-pip-version-check aws-sam-cli==1.170.0

sam-validate: $(STAMP) .venv-sam/bin/sam
	SAM_CLI_TELEMETRY=0 .venv-sam/bin/sam validate --lint --language-extensions --template template.yaml --region us-east-1
	$(BIN)/python -m pytest -q -m sam tests/unit/test_template_loop.py
