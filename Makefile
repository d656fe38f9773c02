PYTHON ?= python3
VENV ?= .venv
BIN = $(VENV)/bin

.PHONY: demo test bench bench-quick lint clean

$(BIN)/mailaction: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test,dev]'
	touch $@

demo: $(BIN)/mailaction
	$(BIN)/mailaction demo

test: $(BIN)/mailaction
	$(BIN)/python -m pytest -q

bench: $(BIN)/mailaction
	bash benchmarks/setup.sh
	$(BIN)/python benchmarks/run.py

bench-quick: $(BIN)/mailaction
	bash benchmarks/setup.sh
	$(BIN)/python benchmarks/run.py --quick

lint: $(BIN)/mailaction
	$(BIN)/ruff check mailaction tests benchmarks
	$(BIN)/mypy --strict mailaction

clean:
	rm -rf $(VENV) build *.egg-info
