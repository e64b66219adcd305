"""The commented weighbridge.yaml that `weighbridge init` writes (tests load it, so it stays valid)."""

EXAMPLE_CONFIG = """\
# weighbridge.yaml - what to bake off. Paths are relative to this file.
# Every model runs every case of every suite with the same settings; figures land in `store`.

models:
  # An in-process llama.cpp model. `bundled:` names a model shipped as a Python package
  # (smollm2-135m, gemma3-270m); use `path: models/your-model.gguf` for any other GGUF file.
  - name: smollm2-135m
    backend: llamacpp
    bundled: smollm2-135m
    catalog_id: smollm2-135m-instruct   # its entry in `weighbridge models` (facts, license, sources)
    mode: chat                 # apply the model's own chat template
    # n_threads: 2             # CPU threads (default: one per physical core this process may use)
    params: {temperature: 0, seed: 42, max_tokens: 256}
    price: {gpu_hour_usd: 0.10} # what the serving hardware costs per hour (here: a small CPU VM)

  # A base (non-chat) model: completion mode sends a plain prompt built from `prompt_template`.
  - name: gemma3-270m
    backend: llamacpp
    bundled: gemma3-270m
    mode: completion
    params: {max_tokens: 128, stop: ["\\nQuestion:", "\\nAnswer:", "\\n\\n\\n"]}
    price: {gpu_hour_usd: 0.10}

  # Variants of one model (quantisations, a LoRA adapter, served precisions) are compared with a
  # reference: `weighbridge quantize smollm2-135m --to Q3_K_M,Q2_K --allow-requantize` adds them here.
  # - name: smollm2
  #   backend: llamacpp
  #   variants:
  #     - {name: Q4_1, reference: true, bundled: smollm2-135m}
  #     - {name: Q2_K, path: models/SmolLM2-135M-Instruct.Q2_K.gguf}
  #     - {name: tuned, bundled: smollm2-135m, lora_path: adapters/my-lora.gguf}

  # Any OpenAI-compatible server: vLLM, SGLang, Ollama (/v1), llama.cpp server, TGI, hosted APIs.
  # - name: qwen2.5-7b-vllm
  #   backend: openai
  #   base_url: http://127.0.0.1:8000/v1
  #   model: Qwen/Qwen2.5-7B-Instruct
  #   catalog_id: qwen2.5-7b-instruct  # lets `weighbridge license check` know the served model's license
  #   api_key_env: VLLM_API_KEY      # the key is read from this env var, never written anywhere
  #   concurrency: auto              # found as the run goes (default for vLLM, SGLang, TGI, Ollama, llama-server), or a number
  #   price: {input_per_mtok: 0.10, output_per_mtok: 0.30}
  #   tokenizer: models/qwen2.5-7b-instruct-q4_k_m.gguf  # counts prompt tokens if the server reports none
suites:
  - builtin:starter            # 48 cases: code, math, extraction, classification, summarisation, zh/en
  # - suites/my-cases.yaml     # your own cases (YAML, JSONL or CSV)

samples: 1                     # repeats per case (temperature 0 makes them identical)
schedule: auto                 # auto: models on this machine run one after another, remote ones in parallel
# profile: profile.yaml        # deployment profile: every run checks each model's license against it
# sandbox: bubblewrap          # model code runs under bubblewrap; `unsafe-local` runs it with no isolation
store: weighbridge.db          # SQLite file with runs, generations, scores and the response cache
report: weighbridge-report.html
"""
