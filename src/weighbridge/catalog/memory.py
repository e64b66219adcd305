"""Will it fit? A memory estimate for serving a catalog model at a quantization and context.

    total = weights + KV cache + overhead
    weights  = total parameters × bits per weight ÷ 8
    KV cache = context × layers × (2 × kv_heads × head_dim, or the MLA latent width) × 2 bytes (f16)
    overhead = 5% of weights + 0.5 GiB (compute buffers, runtime)
Bits per weight are typical llama.cpp figures (K-quants mix block types, so they are averages).
One sequence at the full context; each extra concurrent sequence adds another KV cache.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..core.errors import WeighbridgeError
from .catalog import ModelEntry

GIB = 1024**3
QUANT_BITS = {"f32": 32.0, "f16": 16.0, "bf16": 16.0, "q8_0": 8.5, "q6_k": 6.56, "q5_k_m": 5.69, "q5_0": 5.5,
              "q4_k_m": 4.85, "q4_k_s": 4.58, "q4_0": 4.55, "q3_k_m": 3.91, "q2_k": 3.35, "fp8": 8.0, "mxfp4": 4.25}
FORMULA = ("total = params × bits/8 + context × layers × (2 × kv_heads × head_dim | MLA width) × 2 B "
           "+ (5% of weights + 0.5 GiB)")


@dataclass
class Estimate:
    weights_gib: float
    kv_gib: float | None
    overhead_gib: float
    total_gib: float | None


def parse_size(text: str) -> float:
    """'24GiB', '24GB', '80G', '512MiB' -> bytes."""
    m = re.fullmatch(r"\s*([\d.]+)\s*([KMGT]?)(i?B?)\s*", text, re.IGNORECASE)
    if not m:
        raise WeighbridgeError(f"cannot read size '{text}' (use e.g. 24GiB, 80GB)")
    value, unit, suffix = float(m.group(1)), m.group(2).upper(), m.group(3).lower()
    power = " KMGT".index(unit) if unit else 0
    base = 1000 if suffix == "b" and unit else 1024
    return value * base**power


def parse_context(text: str) -> int:
    """'32k' -> 32768, '128K' -> 131072, '1m' -> 1048576, '8192' -> 8192."""
    m = re.fullmatch(r"\s*(\d+)\s*([kKmM]?)\s*", text)
    if not m:
        raise WeighbridgeError(f"cannot read context '{text}' (use e.g. 8192, 32k, 128k)")
    return int(m.group(1)) * {"": 1, "k": 1024, "m": 1024**2}[m.group(2).lower()]


def estimate(entry: ModelEntry, quant: str, context: int) -> Estimate:
    bits = QUANT_BITS.get(quant.lower())
    if bits is None:
        raise WeighbridgeError(f"unknown quantization '{quant}' (known: {', '.join(QUANT_BITS)})")
    weights = entry.params_total_b * 1e9 * bits / 8
    kv = entry.kv.bytes_per_token() * min(context, entry.context_length) if entry.kv else None
    overhead = 0.05 * weights + 0.5 * GIB
    total = weights + kv + overhead if kv is not None else None
    return Estimate(weights / GIB, None if kv is None else kv / GIB, overhead / GIB, None if total is None else total / GIB)
