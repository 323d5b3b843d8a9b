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

# Byte-code compiled on every core after the install, not by pip on one (2-core machine: install 33 s
# without pip's compile, 110 s with it; compileall -j 0 23 s). Not left to first imports: with
# PYTHONDONTWRITEBYTECODE set, as on that machine, each process compiles what it imports again
# (the suite took 499 s instead of 258 s).
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q --no-compile -e '.[$(EXTRAS)]'
	$(BIN)/python -m compileall -q -j 0 $(VENV)/lib > /dev/null
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
