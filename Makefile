# Two commands set everything up on a fresh clone:
#   make demo   - create .venv, install weighbridge, bake off the two bundled models on the starter suite
#   make test   - create .venv if needed and run the tests (what .ci/run calls)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# llama.cpp's CPU kernels: portable AVX2 ones rather than -march=native. A native build on a Xeon with
# AMX segfaults on the first batched prompt (its AMX weight buffers, seen on this project's machines).
export CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON

.PHONY: setup demo test bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

demo: setup
	$(BIN)/weighbridge bakeoff --json weighbridge-results.json

test: setup
	$(BIN)/python -m pytest -q

bench: setup
	$(BIN)/python bench/engine_overhead.py
	$(BIN)/python bench/llamacpp_throughput.py
	$(BIN)/python bench/hash_throughput.py
	$(BIN)/python bench/loadgen_capacity.py
	$(BIN)/python bench/gateway_overhead.py

clean:
	rm -rf $(VENV) weighbridge.db weighbridge.db-wal weighbridge.db-shm weighbridge-report.html weighbridge-results.json
