"""What each figure of a run means, in one sentence each: every report prints these beside the figures."""

DEFINITIONS = {
    "pass_rate": "share of (case × sample) jobs whose every scorer passed; errors count as failures",
    "answered_pass_rate": "share of the answered jobs (no error) that passed: the model's quality where it answered",
    "error_banner": "shown when a model's errored jobs exceed max_error_rate (default 20%): its pass rate then "
                    "measures the connection or server as much as the model",
    "ci95": "95% Wilson score interval of the pass rate",
    "latency": "request sent → last byte, per job (ms); cached answers keep their original latency",
    "ttft": "request sent → first generated content (text, reasoning or tool call), never a role-only chunk",
    "output_tok_s": "Σ completion tokens ÷ Σ latency over answered jobs (per-request speed, not server throughput)",
    "tokens": "from the server's usage when given ('server'), else the model's tokenizer ('tokenizer': in-process, "
              "or the GGUF a served model's tokenizer: names), else one per streamed chunk ('chunks'); prompt "
              "tokens then come from the server's tokenize endpoint where it has one (vLLM, llama-server), else "
              "they are unknown: '?', and a token-priced cost is marked ≈",
    "cost_per_success": "total cost ÷ passed jobs",
    "busy": "a model's latency, tok/s and hardware cost are marked † when, while it answered, more threads wanted "
            "to run than the machine has CPUs (or a hypervisor stole over 10% of the CPU time): they measure the "
            "contention as much as the model",
    "pass@k": "unbiased estimate over cases of passing at least once in k samples: 1 − C(n−c, k) / C(n, k)",
    "pass^k": "agent tasks: the chance that k trials of a task all succeed, C(c, k) / C(n, k) for c successes in n "
              "trials (tau-bench), averaged over tasks; 95% interval by a seeded bootstrap over tasks",
    "episode": "one agent case run once: the scripted user turns against a fresh sandboxed environment; it succeeds "
               "when it ended with a reply (answered or refused) and every check of the agent scorer passed (end state as the gold "
               "calls' replay, required and forbidden calls, facts of the final answer)",
    "termination": "why an episode ended: answered, refused (the last reply refuses, by the refusal scorer's rule "
                   "set; it can still pass: declining is right in some tasks), cut_off (a reply hit max_tokens), step_limit (a turn's steps), "
                   "episode_step_limit, tool_error_budget, token_limit, context_full, time_limit, environment (a "
                   "tool ran past its time, flooded or the environment died), error (the model's backend failed)",
    "tool_call_validity": "share of an agent's tool calls that reached a tool: the rest were not JSON, named no "
                          "tool offered, or broke the tool's schema",
    "cost_per_successful_episode": "the cost of every episode (all their steps' tokens, or hardware time) ÷ the "
                                   "episodes that succeeded",
    "file": "size of the weights on disk (GGUF, plus its LoRA adapter)",
    "resident": "peak resident memory of an in-process model while it ran: pages of its GGUF mapped in memory plus "
                "the growth of the process's anonymous memory since it began loading (KV cache, compute buffers, "
                "weights llama.cpp repacked), read from /proc/self after loading and after each answer",
    "variants": "each variant against its reference on the same (case, sample) pairs: McNemar's test and Tango's 95% "
                "score interval of Δ pass rate (the interval excludes 0 exactly when p < 0.05); worse = p < α and Δ below −margin; within margin = the "
                "interval above −margin; not shown = neither",
    "unstable": "cases where some samples pass and others fail (needs samples > 1 and temperature > 0)",
}
