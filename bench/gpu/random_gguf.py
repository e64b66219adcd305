"""Write a GGUF of a given Qwen2 shape with random weights, for measuring a server's throughput.

Why: the GPU bench (bench/gpu/served_knee.sh) needs a model of a realistic size on a machine that
cannot download one, and a machine's transfer limit is far below a real checkpoint. Throughput
depends on the shapes, not on the values, so the tokenizer and chat template are copied from a
donor GGUF (the bundled Qwen2.5-Coder-0.5B) and every weight is drawn at random (F16). The answers
are nonsense; their lengths are what ``max_tokens`` allows, since a random model almost never
draws its end-of-turn token.

    python bench/gpu/random_gguf.py skeleton DONOR.gguf OUT.gguf      # metadata only, a few MB
    python bench/gpu/random_gguf.py build SKELETON.gguf OUT.gguf [--shape 1.5b]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from gguf import GGUFReader, GGUFValueType, GGUFWriter

# Qwen2.5 shapes (their config.json files): hidden, layers, ffn, heads, kv heads
SHAPES = {"0.5b": (896, 24, 4864, 14, 2), "1.5b": (1536, 28, 8960, 12, 2), "3b": (2048, 36, 11008, 16, 2),
          "7b": (3584, 28, 18944, 28, 4)}
_SHAPE_KEYS = ("embedding_length", "block_count", "feed_forward_length", "attention.head_count",
               "attention.head_count_kv")


def _copy_fields(reader: GGUFReader, writer: GGUFWriter, replace: dict[str, int]) -> None:
    for key, field in reader.fields.items():
        if key.startswith("GGUF.") or key == "general.architecture":
            continue  # the writer writes these itself
        vtype = field.types[0]
        sub = field.types[1] if vtype == GGUFValueType.ARRAY else None
        value = replace.get(key, field.contents())
        writer.add_key_value(key, value, vtype, sub)


def skeleton(donor: Path, out: Path) -> None:
    reader = GGUFReader(donor)
    arch = reader.fields["general.architecture"].contents()
    if arch != "qwen2":
        sys.exit(f"{donor}: architecture {arch!r}; this script writes qwen2 shapes only")
    writer = GGUFWriter(out, arch)
    _copy_fields(reader, writer, {})
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def build(skel: Path, out: Path, shape: str, seed: int) -> None:
    hidden, layers, ffn, heads, kv_heads = SHAPES[shape]
    reader = GGUFReader(skel)
    vocab = len(reader.fields["tokenizer.ggml.tokens"].data)
    kv_dim = hidden // heads * kv_heads
    replace = {f"qwen2.{k}": v for k, v in zip(_SHAPE_KEYS, SHAPES[shape])}
    replace["general.file_type"] = 1  # mostly F16
    writer = GGUFWriter(out, "qwen2")
    _copy_fields(reader, writer, replace)
    rng = np.random.default_rng(seed)

    def weight(*shape_: int) -> np.ndarray:
        return (rng.standard_normal(shape_, dtype=np.float32) * 0.02).astype(np.float16)

    writer.add_tensor("token_embd.weight", weight(vocab, hidden))
    writer.add_tensor("output_norm.weight", np.ones(hidden, np.float32))
    writer.add_tensor("output.weight", weight(vocab, hidden))
    for i in range(layers):
        b = f"blk.{i}."
        writer.add_tensor(b + "attn_norm.weight", np.ones(hidden, np.float32))
        writer.add_tensor(b + "ffn_norm.weight", np.ones(hidden, np.float32))
        for name, rows in (("attn_q", hidden), ("attn_k", kv_dim), ("attn_v", kv_dim)):
            writer.add_tensor(b + name + ".weight", weight(rows, hidden))
            writer.add_tensor(b + name + ".bias", np.zeros(rows, np.float32))
        writer.add_tensor(b + "attn_output.weight", weight(hidden, hidden))
        writer.add_tensor(b + "ffn_gate.weight", weight(ffn, hidden))
        writer.add_tensor(b + "ffn_up.weight", weight(ffn, hidden))
        writer.add_tensor(b + "ffn_down.weight", weight(hidden, ffn))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("step", choices=("skeleton", "build"))
    ap.add_argument("source", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--shape", choices=sorted(SHAPES), default="1.5b")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    if a.step == "skeleton":
        skeleton(a.source, a.out)
    else:
        build(a.source, a.out, a.shape, a.seed)
    print(f"wrote {a.out} ({a.out.stat().st_size / 2**20:.1f} MiB)")


if __name__ == "__main__":
    main()
