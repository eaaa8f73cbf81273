"""Write version-3 ("L98M") checkpoints: the header and where each tensor goes (ports/llama98/FORMATS.md).

Only the layout lives here; the exporter (export_hf.py) fills it tensor by tensor with seeks, so a model is
never held in memory whole. The header's byte layout, constants and RopeScaling are harness/formats/checkpoint.py's,
the same the oracle parses with, so writer and reader cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.formats.checkpoint import (
    HEADER_BYTES,
    L98M_FLAG_SHARED,
    L98M_LAYOUT,
    L98M_MAGIC,
    L98M_VERSION,
    L98M_WEIGHT_FLOAT32,
    SCALING_LLAMA3,
    SCALING_NONE,
    RopeScaling,
)

LAYER_TENSORS = ("rms_att", "wq", "wk", "wv", "wo", "rms_ffn", "w1", "w2", "w3")


@dataclass(frozen=True)
class L98Header:
    """Every header field of a v3 checkpoint."""

    dim: int
    hidden_dim: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    vocab_size: int
    seq_len: int
    shared_classifier: bool
    rope_theta: float
    norm_eps: float
    scaling: RopeScaling | None = None
    weight_type: int = L98M_WEIGHT_FLOAT32

    @property
    def kv_dim(self) -> int:
        return self.dim // self.n_heads * self.n_kv_heads

    def pack(self) -> bytes:
        """The 256 header bytes."""
        s = self.scaling
        head = L98M_LAYOUT.pack(
            L98M_MAGIC, L98M_VERSION, self.dim, self.hidden_dim, self.n_layers, self.n_heads, self.n_kv_heads,
            self.vocab_size, self.seq_len, self.weight_type, L98M_FLAG_SHARED if self.shared_classifier else 0,
            self.rope_theta, self.norm_eps, SCALING_LLAMA3 if s else SCALING_NONE,
            s.factor if s else 0.0, s.low_freq_factor if s else 0.0, s.high_freq_factor if s else 0.0,
            s.original_max_position_embeddings if s else 0,
        )
        return head + bytes(HEADER_BYTES - len(head))

    def shapes(self) -> dict[str, tuple[int, ...]]:
        """Every tensor, in file order, by name ("embedding", "layers.N.wq", ..., "rms_final", "classifier")."""
        d, h, kv = self.dim, self.hidden_dim, self.kv_dim
        per_layer = {"rms_att": (d,), "wq": (d, d), "wk": (kv, d), "wv": (kv, d), "wo": (d, d), "rms_ffn": (d,),
                     "w1": (h, d), "w2": (d, h), "w3": (h, d)}
        out: dict[str, tuple[int, ...]] = {"embedding": (self.vocab_size, d)}
        for layer in range(self.n_layers):
            out.update({f"layers.{layer}.{name}": shape for name, shape in per_layer.items()})
        out["rms_final"] = (d,)
        if not self.shared_classifier:
            out["classifier"] = (self.vocab_size, d)
        return out

    def offsets(self) -> tuple[dict[str, int], int]:
        """Byte offset of every tensor in the file, and the file's size."""
        offset = HEADER_BYTES
        out: dict[str, int] = {}
        for name, shape in self.shapes().items():
            out[name] = offset
            count = 1
            for n in shape:
                count *= n
            offset += 4 * count
        return out, offset


def cost_per_token(header: L98Header, position: int) -> tuple[int, int]:
    """Multiply-adds of one forward step at `position` (the matrices plus attention over position + 1 keys),
    and the float32 weight bytes it reads."""
    d, h, kv, v = header.dim, header.hidden_dim, header.kv_dim, header.vocab_size
    matrices = header.n_layers * (2 * d * d + 2 * kv * d + 3 * h * d) + v * d
    attention = header.n_layers * 2 * d * (position + 1)
    return matrices + attention, 4 * matrices


def kv_cache_bytes(header: L98Header, positions: int) -> int:
    """float32 keys and values of every layer for `positions` positions: what a run of that length needs."""
    return 2 * header.n_layers * positions * header.kv_dim * 4


# Llama 3.2 1B (config.json of meta-llama/Llama-3.2-1B), for the figures in FORMATS.md.
LLAMA32_1B = L98Header(2048, 8192, 16, 32, 8, 128256, 131072, True, 500000.0, 1e-5,
                       RopeScaling(32.0, 1.0, 4.0, 8192))


def main() -> int:
    """Prints the Llama 3.2 1B shape's cost per token and KV cache at 256 tokens."""
    macs, weight_bytes = cost_per_token(LLAMA32_1B, 255)
    print(f"Llama 3.2 1B: {macs / 1e9:.3f} G multiply-adds per token at position 255, {weight_bytes / 2**30:.2f} GiB "
          f"of float32 weights read per token, KV cache at 256 tokens {kv_cache_bytes(LLAMA32_1B, 256) / 2**20:.1f} "
          f"MiB (at 131072: {kv_cache_bytes(LLAMA32_1B, 131072) / 2**30:.1f} GiB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
