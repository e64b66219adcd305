"""Several sequences decoded together in one llama.cpp context (continuous batching).

On a CPU one decode step reads every weight once whatever the number of tokens in the batch, so
decoding B answers together costs far less than B steps; each sequence keeps its own slot of the
KV cache (``kv_unified`` off: a token attends only to its own sequence's cells), its own sampler
chain (built as llama-cpp-python builds it for one answer, so temperature 0 stays greedy) and its own
stop. New sequences join the batch as others finish; their prompts are fed in the same steps as the
running sequences' next tokens, in chunks that keep each step within ``n_batch`` tokens.

Everything here runs on the one llama.cpp thread (``llama_runtime.LLAMA_THREAD``).
"""

from __future__ import annotations

import ctypes
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from ..core.errors import BackendError


@dataclass
class Sequence:
    """One answer being decoded: its prompt, limits and the sampler that picks its tokens."""

    prompt: list[int]
    max_tokens: int
    stops: list[bytes]
    sampler: Any  # llama_cpp._internals.LlamaSampler, this sequence's alone
    on_text: Callable[[], None] = lambda: None  # called when the answer's text grows (TTFT, token times)
    out: list[int] = field(default_factory=list)
    text: bytes = b""  # the answer so far, cut at a stop once one appears
    fed: int = 0  # prompt tokens already in the KV cache
    decoded: int = 0  # answer tokens fed back (all but the last sampled one, or all when it ended on EOG)
    slot: int = -1
    finish: str | None = None
    ignore_eog: bool = False  # calibration only: decode on past an end-of-generation token

    @property
    def prefilling(self) -> bool:
        return self.fed < len(self.prompt)


class BatchContext:
    """A llama.cpp context with ``slots`` sequences of ``n_ctx_seq`` tokens each, next to the model's
    own context (which keeps serving single answers: grammars with budgets, calibration's reference)."""

    def __init__(self, llm: Any, slots: int, n_ctx_seq: int, n_batch: int = 512) -> None:
        import llama_cpp
        from llama_cpp import _internals

        self._llama_cpp = llama_cpp
        self.llm = llm
        params = type(llm.context_params).from_buffer_copy(llm.context_params)
        params.n_seq_max = slots
        n_ctx_seq = -(-n_ctx_seq // 256) * 256  # llama.cpp pads contexts to 256 cells: split evenly
        self.cells_per_seq = n_ctx_seq
        params.n_ctx = slots * n_ctx_seq
        params.kv_unified = False
        params.n_batch = n_batch
        params.n_ubatch = min(int(params.n_ubatch) or n_batch, n_batch)
        self.n_batch = n_batch
        self.ctx = _internals.LlamaContext(model=llm._model, params=params, verbose=False)
        adapter = getattr(llm, "_lora_adapter", None)
        if adapter is not None:  # the same LoRA as the model's own context
            adapters = (llama_cpp.llama_adapter_lora_p_ctypes * 1)(adapter)
            scales = (ctypes.c_float * 1)(llm.lora_scale)
            if llama_cpp.llama_set_adapters_lora(self.ctx.ctx, adapters, 1, scales):
                self.close()
                raise BackendError("llama.cpp could not apply the LoRA adapter to the batch context", kind="engine")
        self.batch = _internals.LlamaBatch(n_tokens=n_batch, embd=0, n_seq_max=1, verbose=False)
        self.free = list(range(slots))[::-1]
        self.held: list[list[int]] = [[] for _ in range(slots)]  # the tokens each slot's cells still hold
        self.reused_tokens = 0  # prompt tokens found in a slot's cells, not decoded again
        self.active: list[Sequence] = []
        self.vocab = llm._model.vocab
        self.busy_seconds = 0.0  # time spent in decode steps
        self.sequence_seconds = 0.0  # Σ over steps of (step time × sequences in it): ÷ busy = mean batch

    def close(self) -> None:
        for part in ("batch", "ctx"):
            obj = getattr(self, part, None)
            if obj is not None:
                obj.close()
                setattr(self, part, None)

    @property
    def has_room(self) -> bool:
        return bool(self.free)

    def admit(self, seq: Sequence) -> None:
        """Give ``seq`` the free slot whose cells already hold the longest start of its prompt (the
        last answer there: cases of one suite share system prompts and tool definitions), and clear
        the rest of them. As llama-server's prompt cache, per slot."""
        shared = {q: self.llm.longest_token_prefix(self.held[q], seq.prompt) for q in self.free}
        # among equals the lowest slot: running answers then sit in consecutive slots, which llama.cpp
        # decodes in one pass (a gap splits the step into one pass per run of slots)
        slot = max(self.free, key=lambda q: (shared[q], -q))
        self.free.remove(slot)
        keep = min(shared[slot], len(seq.prompt) - 1)  # at least one token is decoded: its logits pick the first
        if keep <= 0 or not self._llama_cpp.llama_memory_seq_rm(self.ctx.memory, slot, keep, -1):
            keep = 0
            self._llama_cpp.llama_memory_seq_rm(self.ctx.memory, slot, -1, -1)
        seq.slot, seq.fed = slot, keep
        self.held[slot] = []
        self.reused_tokens += keep
        self.active.append(seq)

    def retire(self, seq: Sequence, intact: bool = True) -> None:
        """Free ``seq``'s slot; its cells stay for the next prompt that starts the same way, unless the
        step that held it failed (then nothing in them is trusted)."""
        if seq in self.active:
            self.active.remove(seq)
        self.held[seq.slot] = seq.prompt[:seq.fed] + seq.out[:seq.decoded] if intact else []
        self.free.append(seq.slot)

    def step(self) -> list[Sequence]:
        """One decode step over every active sequence; the sequences that finished in it (their slots
        freed)."""
        b = self.batch.batch
        n = 0
        rows: list[tuple[Sequence, int]] = []

        def add(seq: Sequence, token: int, pos: int, logits: bool) -> None:
            nonlocal n
            b.token[n], b.pos[n], b.n_seq_id[n], b.logits[n] = token, pos, 1, logits
            b.seq_id[n][0] = seq.slot
            if logits:
                rows.append((seq, n))
            n += 1

        # running answers get their one token each, prompts the room left; then every token goes in in
        # slot order: llama.cpp splits a batch whose sequences come out of order into more steps (half
        # the tokens/s at 16 answers, measured)
        room = self.n_batch - sum(1 for seq in self.active if not seq.prefilling)
        for seq in sorted(self.active, key=lambda q: q.slot):
            if not seq.prefilling:
                add(seq, seq.out[-1], len(seq.prompt) + len(seq.out) - 1, True)
                seq.decoded += 1
            elif room > 0:
                k = min(room, len(seq.prompt) - seq.fed)
                for i in range(seq.fed, seq.fed + k):
                    add(seq, seq.prompt[i], i, i == len(seq.prompt) - 1)
                seq.fed += k
                room -= k
        if n == 0:
            return []
        b.n_tokens = n
        t0 = time.perf_counter()
        rc = self._llama_cpp.llama_decode(self.ctx.ctx, b)
        if rc != 0:
            raise BackendError(f"llama.cpp batch decode failed (code {rc})", kind="engine")
        finished = []
        for seq, i in rows:
            token = seq.sampler.sample(self.ctx, i)
            if self._push(seq, token):
                finished.append(seq)
        spent = time.perf_counter() - t0
        self.busy_seconds += spent
        self.sequence_seconds += spent * len(self.active)
        for seq in finished:
            self.retire(seq)
        return finished

    def _push(self, seq: Sequence, token: int) -> bool:
        """Take one sampled token; is the answer over? Mirrors llama-cpp-python's create_completion:
        an end-of-generation token ends it unprinted, a stop string cuts the text before it (the
        first of the stops, in their order, that appears), max_tokens ends it as ``length``."""
        if not seq.ignore_eog and self._llama_cpp.llama_vocab_is_eog(self.vocab, token):
            seq.finish = "stop"
            return True
        seq.out.append(token)
        piece = self.llm._model.detokenize([token], special=False)
        before = len(seq.text)
        seq.text += piece
        hits = [s for s in seq.stops if s in seq.text]
        if hits:
            seq.text = seq.text[:seq.text.index(hits[0])]
            seq.finish = "stop"
        elif len(seq.out) >= seq.max_tokens:
            seq.finish = "length"
        if len(seq.text) > before:
            seq.on_text()
        return seq.finish is not None


def measure(llm: Any, ctx: BatchContext, size: int, prompt: list[int], steps: int) -> float:
    """Aggregate decode tokens/s with ``size`` sequences decoding together (greedy, no stop): the
    prompts are fed first and one step taken, then ``steps`` steps are timed."""
    from llama_cpp import _internals as internals_module

    internals: Any = internals_module  # untyped library: its sampler is handled as Any
    samplers = []
    try:
        for _ in range(size):
            sampler = internals.LlamaSampler()
            sampler.add_greedy()
            samplers.append(sampler)
            ctx.admit(Sequence(prompt=list(prompt), max_tokens=1 << 30, stops=[], sampler=sampler, ignore_eog=True))
        while any(s.prefilling for s in ctx.active):
            ctx.step()
        ctx.step()  # a fresh context's first decode step sizes its buffers: not timed
        t0 = time.perf_counter()
        for _ in range(steps):
            ctx.step()
        return size * steps / (time.perf_counter() - t0)
    finally:
        for seq in list(ctx.active):
            ctx.retire(seq)
        for sampler in samplers:
            sampler.close()


def choose_size(rates: dict[int, float], gain: float = 1.1) -> int:
    """The largest measured batch size that still raised aggregate tokens/s by ``gain`` over the best
    smaller one."""
    best, best_rate = 1, rates.get(1, 0.0)
    for size in sorted(rates):
        if size > 1 and rates[size] >= best_rate * gain:
            best, best_rate = size, rates[size]
    return best
