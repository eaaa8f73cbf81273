"""Generate llama2.c checkpoints and tokenizers with seeded random weights, of any shape.

Real models cover only a few shapes; the port must be right for all of them (grouped-query attention, an
unshared classifier, odd hidden sizes, vocabularies of any size) and fast on the 15M shape, which only needs
the right cost per token, not trained weights. Files are built on demand and cached (cache_dir("models")),
never committed; writes are atomic so parallel test workers never see half a file.

Weights are scaled so the model is not degenerate: matrices ~ N(0, (1.5 / sqrt(fan_in))^2) make every layer's
output outweigh the token's own embedding (with a shared classifier a weak residual makes the model repeat its
input forever), RMSnorm weights are ~1, and embedding/classifier rows of norm ~3 give logits of a few units, so
argmax text varies and T=1 sampling is neither uniform nor one-hot (tuned by measuring distinct tokens per
60-step run on every shape). The rows of <unk>, BOS and EOS are shrunk (x0.1) so a random model rarely stops at
once on BOS, and the byte tokens' (x0.5) so they appear now and then without dominating.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from harness.core.atomic import write_atomically
from harness.core.errors import HarnessError
from harness.core.paths import cache_dir
from harness.formats.checkpoint import ModelConfig, pack_header
from harness.formats.parts import PART_LIMIT, PartsWriter, part_sizes

GENERATOR_VERSION = 1  # bump when the weight recipe changes, so cached files are rebuilt
SPECIAL_TOKENS = (b"<unk>", b"\n<s>\n", b"\n</s>\n")
MIN_VOCAB = len(SPECIAL_TOKENS) + 256 + 1  # specials, 256 byte tokens, and the " " dummy prefix


class ModelGenError(HarnessError):
    """A shape or request the generator cannot honour."""


@dataclass(frozen=True)
class ModelShape(ModelConfig):
    """A checkpoint's header fields (the oracle's ModelConfig) for a model to generate; shared classifier by
    default."""

    shared_classifier: bool = True

    def check(self) -> None:
        if min(self.dim, self.hidden_dim, self.n_layers, self.n_heads, self.n_kv_heads, self.seq_len) <= 0:
            raise ModelGenError(f"shape fields must be positive: {self}")
        if self.dim % self.n_heads or self.n_heads % self.n_kv_heads or (self.dim // self.n_heads) % 2:
            raise ModelGenError(f"dim/heads/kv_heads do not divide into even head sizes: {self}")
        if self.vocab_size < MIN_VOCAB:
            raise ModelGenError(f"vocab_size {self.vocab_size} < {MIN_VOCAB} (specials + 256 bytes + ' ')")

    def slug(self) -> str:
        """A file-name-safe identity of the shape (two names for one shape share a cached file)."""
        return (
            f"d{self.dim}-h{self.hidden_dim}-l{self.n_layers}-nh{self.n_heads}-kv{self.n_kv_heads}"
            f"-v{self.vocab_size}-s{self.seq_len}-{'shared' if self.shared_classifier else 'unshared'}"
        )


SHAPES: dict[str, ModelShape] = {
    # the TinyStories 15M model's shape: speed work and instruction counts
    "15M-shape": ModelShape(288, 768, 6, 6, 6, 32000, 256),
    # the TinyStories 260K model's shape: the offline stand-in for the main job when the real model is absent
    "260K-shape": ModelShape(64, 172, 5, 8, 4, 512, 512),
    # grouped-query attention (4 query heads per kv head), vocab 512 like tok512
    "gqa-512": ModelShape(64, 172, 2, 8, 2, 512, 128),
    # separate classifier at the end of the file (negative vocab_size in v0)
    "unshared-512": ModelShape(48, 128, 2, 4, 4, 512, 64, shared_classifier=False),
    # odd hidden size, multi-query attention, a vocabulary no real tokenizer has
    "odd-hidden-mqa": ModelShape(32, 97, 3, 2, 1, 300, 96),
    # several layers, GQA, unshared classifier, odd hidden, vocab 32000 (the Llama 2 tokenizer)
    "gqa-unshared-32000": ModelShape(96, 250, 3, 6, 3, 32000, 80, shared_classifier=False),
    # one head (head size = dim), vocab 400, short context
    "single-head-400": ModelShape(64, 100, 2, 1, 1, 400, 40),
    # llama2.c's largest TinyStories model (stories110M): ~440 MB of float32, more than a 128 MB guest's RAM
    "110M-shape": ModelShape(768, 2048, 12, 12, 12, 32000, 1024),
    # Llama 3.2 1B's tensor shapes (dim 2048, hidden 8192, 16 layers, 32 heads, 8 kv heads, vocab 128256, shared
    # classifier) in the llama2.c format, so the :q8_0 and :ternary suffixes quantize it like any other shape;
    # ~5.0 GB of float32, ~1.3 GB as Q8_0. Same cost per token as the real model; not its RoPE (theta 500000,
    # llama3 scaling) nor its tiktoken tokenizer, which need the version-3 format. Context cut to 2048 positions
    # (the real 131072 would make a 4 GiB KV cache).
    "1B-shape": ModelShape(2048, 8192, 16, 32, 8, 128256, 2048),
}
# Shapes for the bigger-than-RAM work (hundreds of MB to GB): benchmarks and dedicated runs, never the unit tests
# that sweep every small shape.
LARGE_SHAPES: tuple[str, ...] = ("15M-shape", "110M-shape", "1B-shape")
STREAM_BLOCK_FLOATS = 1 << 21  # floats drawn and written at a time (8 MB): a 5 GB model never sits in memory


def random_weights(shape: ModelShape, seed: int) -> dict[str, np.ndarray]:
    """Named float32 weight arrays in PyTorch (out, in) layout."""
    shape.check()
    rng = np.random.default_rng(seed)
    d, h, l, v, kv = shape.dim, shape.hidden_dim, shape.n_layers, shape.vocab_size, shape.kv_dim

    def matrix(*dims: int) -> np.ndarray:
        scale = np.float32(1.5 / np.sqrt(dims[-1]))
        return rng.standard_normal(dims, dtype=np.float32) * scale

    def norm(*dims: int) -> np.ndarray:
        return np.float32(1.0) + rng.standard_normal(dims, dtype=np.float32) * np.float32(0.1)

    def vocab_table() -> np.ndarray:
        table = rng.standard_normal((v, d), dtype=np.float32) * np.float32(3.0 / np.sqrt(d))
        table[: len(SPECIAL_TOKENS)] *= np.float32(0.1)
        table[len(SPECIAL_TOKENS) : len(SPECIAL_TOKENS) + 256] *= np.float32(0.5)
        return table

    weights = {
        "embedding": vocab_table(),
        "rms_att": norm(l, d),
        "wq": matrix(l, d, d),
        "wk": matrix(l, kv, d),
        "wv": matrix(l, kv, d),
        "wo": matrix(l, d, d),
        "rms_ffn": norm(l, d),
        "w1": matrix(l, h, d),
        "w2": matrix(l, d, h),
        "w3": matrix(l, h, d),
        "rms_final": norm(d),
    }
    if not shape.shared_classifier:
        weights["classifier"] = vocab_table()
    return weights


def _rope_tables(shape: ModelShape) -> tuple[np.ndarray, np.ndarray]:
    """The (unused by readers) freq_cis tables legacy files carry: (seq_len, head_size/2) cos and sin."""
    hs = shape.head_size
    freqs = 1.0 / (10000.0 ** (np.arange(0, hs, 2)[: hs // 2] / hs))
    angles = np.outer(np.arange(shape.seq_len), freqs)
    return np.cos(angles).astype(np.float32), np.sin(angles).astype(np.float32)


def _atomic_write(path: Path, chunks: Iterable[Any]) -> None:
    """Bytes, or numpy arrays written raw as little-endian float32, through the one atomic writer."""
    write_atomically(Path(path), (chunk if isinstance(chunk, bytes) else np.ascontiguousarray(chunk, "<f4").tobytes()
                                  for chunk in chunks))


def _file_layout(shape: ModelShape, version: int) -> tuple[bytes, list[tuple[str, tuple[int, ...]]]]:
    """The header and the tensors of a v0 or v1 file, in file order, with their shapes."""
    d, h, l, v, kv = shape.dim, shape.hidden_dim, shape.n_layers, shape.vocab_size, shape.kv_dim
    tensors = {"embedding": (v, d), "rms_att": (l, d), "wq": (l, d, d), "wk": (l, kv, d), "wv": (l, kv, d),
               "wo": (l, d, d), "rms_ffn": (l, d), "w1": (l, h, d), "w2": (l, d, h), "w3": (l, h, d),
               "rms_final": (d,)}
    if version == 0:
        half = shape.head_size // 2
        order = ["embedding", "rms_att", "wq", "wk", "wv", "wo", "rms_ffn", "w1", "w2", "w3", "rms_final"]
        tensors.update({"cos": (shape.seq_len, half), "sin": (shape.seq_len, half)})
        order += ["cos", "sin"]
    elif version == 1:
        order = ["rms_att", "rms_ffn", "rms_final", "embedding", "wq", "wk", "wv", "wo", "w1", "w2", "w3"]
    else:
        raise ModelGenError(f"checkpoint version {version} is not supported (0 or 1)")
    if not shape.shared_classifier:
        tensors["classifier"] = (v, d)
        order.append("classifier")
    return pack_header(version, shape), [(name, tensors[name]) for name in order]


def _weight_blocks(shape: ModelShape, seed: int) -> Iterable[tuple[str, int, np.ndarray]]:
    """(tensor, first float, block) in the order random_weights draws them, in blocks of at most
    STREAM_BLOCK_FLOATS: the same numbers as random_weights (a generator's stream does not depend on how the
    draws are split), without ever holding a whole tensor."""
    shape.check()
    rng = np.random.default_rng(seed)
    d, h, l, v, kv = shape.dim, shape.hidden_dim, shape.n_layers, shape.vocab_size, shape.kv_dim

    def rows(name: str, count: int, cols: int, scale: np.float32,
             row_scale: Any = None) -> Iterable[tuple[str, int, np.ndarray]]:
        step = max(1, STREAM_BLOCK_FLOATS // cols)
        for first in range(0, count, step):
            block = rng.standard_normal((min(step, count - first), cols), dtype=np.float32) * scale
            if row_scale is not None:
                row_scale(block, first)
            yield name, first * cols, block

    def vocab_scale(block: np.ndarray, first: int) -> None:
        special, byte_end = len(SPECIAL_TOKENS), len(SPECIAL_TOKENS) + 256
        for row in range(first, min(first + len(block), byte_end)):
            block[row - first] *= np.float32(0.1) if row < special else np.float32(0.5)

    def norm(name: str, count: int) -> Iterable[tuple[str, int, np.ndarray]]:
        yield name, 0, np.float32(1.0) + rng.standard_normal(count, dtype=np.float32) * np.float32(0.1)

    def matrix(name: str, out_dim: int, in_dim: int) -> Iterable[tuple[str, int, np.ndarray]]:
        for layer in range(l):
            for tensor, first, block in rows(name, out_dim, in_dim, np.float32(1.5 / np.sqrt(in_dim))):
                yield tensor, layer * out_dim * in_dim + first, block

    vocab = np.float32(3.0 / np.sqrt(d))
    yield from rows("embedding", v, d, vocab, vocab_scale)
    yield from norm("rms_att", l * d)
    yield from matrix("wq", d, d)
    yield from matrix("wk", kv, d)
    yield from matrix("wv", kv, d)
    yield from matrix("wo", d, d)
    yield from norm("rms_ffn", l * d)
    yield from matrix("w1", h, d)
    yield from matrix("w2", d, h)
    yield from matrix("w3", h, d)
    yield from norm("rms_final", d)
    if not shape.shared_classifier:
        yield from rows("classifier", v, d, vocab, vocab_scale)


def write_checkpoint(path: str | Path, shape: ModelShape, seed: int, version: int = 0,
                     part_bytes: int | None = None, limit: int = PART_LIMIT) -> Path:
    """Write a llama2.c checkpoint (legacy v0 or v1) with seeded random weights; same seed, same weights.

    Streamed: blocks are drawn in random_weights' order and written at their place in the file (v1 stores the
    tensors in another order than they are drawn), so memory stays at a few blocks whatever the model's size.
    Split into parts (harness/formats/parts.py) of `part_bytes`, or automatically when the file reaches `limit`
    (the 1B shape's 4.9 GB); returns the first part's path.
    """
    header, layout = _file_layout(shape, version)
    offsets, offset = {}, len(header)
    for name, dims in layout:
        offsets[name] = offset
        offset += 4 * int(np.prod(dims))
    target = Path(path)
    with PartsWriter(target, offset, part_bytes, limit) as out:
        out.write_at(0, header)
        for name, first, block in _weight_blocks(shape, seed):
            out.write_at(offsets[name] + 4 * first, np.ascontiguousarray(block, "<f4").tobytes())
        if version == 0:
            cos, sin = _rope_tables(shape)
            for name, table in (("cos", cos), ("sin", sin)):
                out.write_at(offsets[name], np.ascontiguousarray(table, "<f4").tobytes())
    return target


_CHARS = (
    " etaoinshrdlucmfwypvbgkqjxzETAOINSHRDLUCMFWYPVBGKQJXZ0123456789.,!?'\"-:;()"
    "/$`+*&\\%<>|[]~#@^_={}"
)
_EXTRA_CODEPOINTS = ("é", "ñ", "ü", "—", "’", "日")


def tokenizer_pieces(vocab_size: int, seed: int) -> list[tuple[bytes, float]]:
    """A valid llama2.c vocabulary: specials, <0xNN> byte tokens, single characters, then merged pieces.

    Merged pieces are concatenations of two earlier pieces, so BPE can reach them; they score -rank like
    sentencepiece vocabularies. No piece but the byte tokens starts with "<0x" (run.c would decode it as a byte).
    """
    if vocab_size < MIN_VOCAB:
        raise ModelGenError(f"vocab_size {vocab_size} < {MIN_VOCAB} (specials + 256 bytes + ' ')")
    pieces: list[tuple[bytes, float]] = [(piece, 0.0) for piece in SPECIAL_TOKENS]
    pieces += [(f"<0x{b:02X}>".encode(), 0.0) for b in range(256)]
    singles = [c.encode() for c in _CHARS] + [c.encode("utf-8") for c in _EXTRA_CODEPOINTS]
    room = vocab_size - len(pieces)
    for char in singles[:room]:
        pieces.append((char, -1e6))
    rng = np.random.default_rng(seed)
    seen = {piece for piece, _ in pieces}
    words = [p for p, _ in pieces[len(SPECIAL_TOKENS) + 256 :] if len(p) == 1 and p.isalpha()] or [b" "]
    building = [p for p, _ in pieces[len(SPECIAL_TOKENS) + 256 :]]
    rank = 0
    while len(pieces) < vocab_size:
        left = building[int(rng.integers(len(building)))] if rng.random() < 0.5 else b" "
        right = (building[int(rng.integers(len(building)))] if rng.random() < 0.7
                 else words[int(rng.integers(len(words)))])
        merged = left + right
        if len(merged) > 12 or merged in seen or merged.startswith(b"<0x") or b"\0" in merged:
            continue
        seen.add(merged)
        building.append(merged)
        pieces.append((merged, float(-rank)))
        rank += 1
    return pieces


def write_tokenizer(path: str | Path, vocab_size: int, seed: int) -> Path:
    """Write a llama2.c tokenizer file with vocab_size pieces (for vocabularies without a real tokenizer)."""
    pieces = tokenizer_pieces(vocab_size, seed)
    max_len = max(len(piece) for piece, _ in pieces)
    chunks = [struct.pack("<i", max_len)]
    chunks += [struct.pack("<fi", score, len(piece)) + piece for piece, score in pieces]
    _atomic_write(Path(path), [b"".join(chunks)])
    return Path(path)


def shape_named(name_or_shape: str | ModelShape) -> ModelShape:
    if isinstance(name_or_shape, ModelShape):
        return name_or_shape
    if name_or_shape not in SHAPES:
        raise ModelGenError(f"unknown model shape {name_or_shape!r} (known: {', '.join(SHAPES)})")
    return SHAPES[name_or_shape]


def cached_checkpoint(name_or_shape: str | ModelShape, seed: int = 0, version: int = 0) -> Path:
    """A generated checkpoint of this shape and seed, built once into cache_dir("models") and reused; the path of
    its first part (harness/formats/parts.py)."""
    shape = shape_named(name_or_shape)
    path = cache_dir("models") / f"gen{GENERATOR_VERSION}-{shape.slug()}-seed{seed}-v{version}.bin"
    if not path.is_file() or max(part_sizes(path)) >= PART_LIMIT:  # absent, or cached before files were split
        write_checkpoint(path, shape, seed, version)
    return path


def cached_tokenizer(vocab_size: int, seed: int = 0) -> Path:
    """A generated tokenizer with vocab_size pieces, built once into cache_dir("models") and reused."""
    path = cache_dir("models") / f"gen{GENERATOR_VERSION}-tok{vocab_size}-seed{seed}.bin"
    if not path.is_file():
        write_tokenizer(path, vocab_size, seed)
    return path

