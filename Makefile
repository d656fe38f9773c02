PYTHON ?= python3
VENV ?= .venv
BIN = $(VENV)/bin

.PHONY: demo test bench bench-quick lint mutation clean

# The editable install leaves mailaction's own modules without bytecode; where
# PYTHONDONTWRITEBYTECODE is set (containers often set it) every command would compile them
# again, 80 ms. compileall writes it, as installing a wheel would.
$(BIN)/mailaction: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test,dev]'
	$(BIN)/python -m compileall -q mailaction
	touch $@

demo: $(BIN)/mailaction
	$(BIN)/mailaction demo

test: $(BIN)/mailaction
	$(BIN)/python -m pytest -q

bench: $(BIN)/mailaction
	bash benchmarks/setup.sh
	$(BIN)/python -m compileall -q mailaction
	$(BIN)/python benchmarks/run.py

bench-quick: $(BIN)/mailaction
	bash benchmarks/setup.sh
	$(BIN)/python -m compileall -q mailaction
	$(BIN)/python benchmarks/run.py --quick

lint: $(BIN)/mailaction
	$(BIN)/ruff check mailaction tests benchmarks tools
	$(BIN)/mypy --strict mailaction

# Mutation score per module of the sending path and the input checks (minutes; not in CI).
# MUTATION="--every 5 sender" tries one mutant in five of one module; see docs/mutation.md.
mutation: $(BIN)/mailaction
	$(BIN)/python tools/mutation.py $(MUTATION)

clean:
	rm -rf $(VENV) build *.egg-info
