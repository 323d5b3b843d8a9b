# The README's two commands: `make demo` (set up, export the demo model, embed the
# example audio) and `make test` (set up, run the test suite). Both work on a fresh
# machine with Python >= 3.10 and its venv module.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# onnxruntime (CPU) here; on a GPU machine use EXTRAS=gpu,export,test,ray (never both runtimes).
EXTRAS ?= cpu,export,test,ray

.PHONY: setup demo test bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[$(EXTRAS)]'
	touch $@

models/vggish/manifest.json: | $(VENV)/.installed
	$(BIN)/vggish-rt export --demo --out models/vggish

demo: $(VENV)/.installed models/vggish/manifest.json
	mkdir -p out
	$(BIN)/vggish-rt embed examples/audio --out out/example_embeddings.csv
	$(BIN)/vggish-rt doctor

test: $(VENV)/.installed
	$(BIN)/python -m pytest -ra

clean:
	rm -rf out .pytest_cache
