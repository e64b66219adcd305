#!/usr/bin/env bash
# Does `concurrency: auto` find a real GPU server's knee? llama-server (continuous batching, --parallel
# slots) on one GPU, serving a Qwen2.5-1.5B-shaped model with random F16 weights (random_gguf.py: the
# shapes set the speed; a machine without network has no real checkpoint), measured by
# bench/served_concurrency.py at fixed concurrencies and at auto.
#
#   bash bench/gpu/served_knee.sh build   WORK   # WORK/llama.cpp.tar.xz -> llama-server; WORK/qwen2-skeleton.gguf -> the model
#   bash bench/gpu/served_knee.sh measure WORK   # the server on the model, then the bench against it
#
# WORK/qwen2-skeleton.gguf is `python bench/gpu/random_gguf.py skeleton <bundled Qwen GGUF> ...`;
# llama.cpp.tar.xz is the source llama-cpp-python 0.3.36 vendors (its sdist's vendor/llama.cpp).
# Knobs (environment): SHAPE (1.5b), PARALLEL (128 slots), CASES (1000), MAX_TOKENS (64),
# FIXED (4,32,128,256), CEILING (256), CUDA_ARCH (90).
set -euo pipefail
step=$1 work=$(realpath "$2")
here=$(cd "$(dirname "$0")/../.." && pwd)
case $step in
build)
  mkdir -p "$work/src" && tar xJf "$work/llama.cpp.tar.xz" -C "$work/src"
  src=$(ls -d "$work"/src/*/ | head -1)
  model="$work/model-${SHAPE:-1.5b}.gguf"
  PYTHONPATH="$src/gguf-py:${PYTHONPATH:-}" python3 "$here/bench/gpu/random_gguf.py" build \
    "$work/qwen2-skeleton.gguf" "$model" --shape "${SHAPE:-1.5b}" >"$work/model.log" 2>&1 &
  writer=$!
  t0=$(date +%s)
  cmake -S "$src" -B "$work/build" -G Ninja -DGGML_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES="${CUDA_ARCH:-90}" \
    -DGGML_CUDA_NCCL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_APP=OFF \
    -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_SERVER=ON -DCMAKE_BUILD_TYPE=Release >"$work/cmake.log" 2>&1 \
    || { tail -30 "$work/cmake.log"; exit 1; }
  cmake --build "$work/build" --target llama-server -j "$(nproc)" >"$work/build.log" 2>&1 || { tail -40 "$work/build.log"; exit 1; }
  echo "built llama-server in $(( $(date +%s) - t0 )) s"
  wait $writer || { cat "$work/model.log"; exit 1; }
  cat "$work/model.log"
  ;;
measure)
  model="$work/model-${SHAPE:-1.5b}.gguf"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  parallel=${PARALLEL:-128}
  "$work/build/bin/llama-server" -m "$model" --alias random-qwen2 \
    -ngl 999 --parallel "$parallel" -c $(( parallel * 1024 )) --host 127.0.0.1 --port 8089 \
    >"$work/server.log" 2>&1 &
  server=$!
  trap 'kill $server 2>/dev/null || true' EXIT
  for _ in $(seq 240); do
    python3 -c "import urllib.request as u; u.urlopen('http://127.0.0.1:8089/health', timeout=1)" 2>/dev/null && break
    kill -0 $server 2>/dev/null || { tail -30 "$work/server.log"; exit 1; }
    sleep 0.5
  done
  echo "llama-server: --parallel $parallel -c $(( parallel * 1024 )) -ngl 999 (continuous batching, its default)"
  PYTHONPATH="$here/src:${PYTHONPATH:-}" python3 "$here/bench/served_concurrency.py" \
    --base-url http://127.0.0.1:8089/v1 --model random-qwen2 --cases "${CASES:-1000}" \
    --max-tokens "${MAX_TOKENS:-64}" --fixed "${FIXED:-4,32,128,256}" --ceiling "${CEILING:-256}"
  ;;
*) echo "usage: $0 build|measure WORK" >&2; exit 2 ;;
esac
