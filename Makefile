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

# --no-compile: Python compiles only the modules a run imports, when it first imports them, instead of
# every file of TensorFlow and Ray at install (measured on the 2-core machine: install 33 s instead of
# 110 s; the first import of TensorFlow, Ray, onnxruntime and tf2onnx 12.5 s instead of 4.9 s, once).
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q --no-compile -e '.[$(EXTRAS)]'
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
