"""`llama98-harness quantize`: convert a float32 llama2.c checkpoint to Q8_0 (llama2.c v2) or ternary (version 98).

Q8_0 is written exactly as llama2.c's export.py `--version 2` writes it (float32 arithmetic, symmetric int8,
scale = max|w| / 127 per group, round half to even), so its files and ours are interchangeable; unlike
export.py, a group size that does not divide hidden_dim is refused (runq would silently compute garbage with
it). Ternary follows BitNet b1.58's absmean recipe (harness/oracle/quant.py); the layout is
ports/llama98/FORMATS.md. Also used by modelgen to make generated quantized models (`15M-shape:q8_0`).

Memory: every tensor is read, quantized and written in blocks of at most `block_floats` (default BLOCK_FLOATS)
values, never whole. The input is memory-mapped (harness/oracle/checkpoint), so what the quantizer itself holds
is a few block-sized temporaries plus one tensor's Q8_0 scales (1/16 of its int8 bytes), whatever the model's
size: the 1B shape's classifier alone is 1 GB of float32, and quantizing it whole took several times that. The
bytes are those of the oracle's whole-tensor functions (quantize_q80, quantize_ternary): a Q8_0 group never
spans two blocks, and ternary's mean |W| is summed block after block in the order numpy sums the whole tensor
(see _ternary_scale). The pages of the mapped input a block was read from are handed back after it (_release), so
the resident set stays bounded too, not only what the quantizer allocates.
"""

from __future__ import annotations

import ctypes
import math
import mmap
import struct
import sys
from collections.abc import Callable, Iterable
from dataclasses import replace
from pathlib import Path

import numpy as np

from harness.core.errors import HarnessError, UsageError
from harness.formats.checkpoint import Q8_VERSION, TERNARY_VERSION, ModelConfig, pack_header
from harness.formats.parts import (
    PART_LIMIT,
    check_output_path,
    check_part_bytes,
    logical_size,
    write_parts,
)
from harness.oracle.checkpoint import Checkpoint, Weights, load_checkpoint
from harness.oracle.quant import pack_ternary, quantize_q80

DEFAULT_MAX_GROUP = 64  # llama2.c export.py's default group size
QUANT_TYPES = ("q8_0", "ternary")
BLOCK_FLOATS = 1 << 20  # float32 values quantized at a time (4 MiB): peak memory is a few of these


class QuantizeError(HarnessError):
    """The input cannot be quantized as asked (wrong format, group size, shape)."""


def default_group_size(dim: int, hidden_dim: int) -> int:
    """The largest group size up to llama2.c's default 64 that divides both dim and hidden_dim."""
    common = math.gcd(dim, hidden_dim)
    return max(g for g in range(1, DEFAULT_MAX_GROUP + 1) if common % g == 0)


def check_group_size(config: ModelConfig, group: int) -> None:
    if group <= 0:
        raise QuantizeError(f"group size {group} must be positive")
    for name, size in (("dim", config.dim), ("hidden_dim", config.hidden_dim)):
        if size % group:
            raise QuantizeError(f"group size {group} does not divide {name} {size}")


def _flat(tensor: np.ndarray) -> np.ndarray:
    """The tensor as one row of float32 values: a view of the memory map (or array), not a copy."""
    return np.asarray(tensor, dtype=np.float32).reshape(-1)


def _blocks(flat: np.ndarray, unit: int, block_floats: int) -> Iterable[np.ndarray]:
    """Consecutive views of `flat`, each (but the last) a multiple of `unit` values (a Q8_0 group, four packed
    ternary weights) and of numpy's reduction buffer (_ternary_scale), about `block_floats` long. Each block's
    input pages are released (_file_pages) when the consumer asks for the next one."""
    step = math.lcm(unit, np.getbufsize())
    size = max(1, block_floats // step) * step
    release = _file_pages(flat)
    for start in range(0, flat.size, size):
        block = flat[start:start + size]
        yield block
        release(block)


_MADV_DONTNEED = 4  # Linux's value, where Python's mmap module does not define it


def _address_range(array: np.ndarray) -> tuple[int, int]:
    first = int(array.__array_interface__["data"][0])
    return first, first + array.nbytes


def _file_pages(tensor: np.ndarray) -> Callable[[np.ndarray], None]:
    """A function that drops the whole pages under a part of `tensor` from the resident set, where they belong to
    a read-only file mapping (the memory-mapped checkpoint): a later read faults them in again from the page
    cache, with the same bytes. Without it, reading a 5 GB model through its mapping leaves 5 GB resident
    (reclaimable, but counted in the process's RSS). Anonymous or writable memory (a checkpoint read into an
    array, generated weights) is never touched: MADV_DONTNEED would zero it. A no-op off Linux.

    The mappings are read from /proc/self/maps once per tensor (a split checkpoint is several mappings side by
    side)."""
    if not sys.platform.startswith("linux") or tensor.nbytes < mmap.PAGESIZE:
        return lambda block: None
    low, high = _address_range(tensor)
    ranges = []
    with open("/proc/self/maps", encoding="ascii", errors="replace") as maps:
        for line in maps:
            fields = line.split()
            if len(fields) >= 6 and "w" not in fields[1] and fields[4] != "0":  # not writable, has an inode
                start, end = (int(bound, 16) for bound in fields[0].split("-"))
                if start < high and end > low:
                    ranges.append((start, end))
    if not ranges:
        return lambda block: None
    libc = ctypes.CDLL(None, use_errno=True)
    libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    page = mmap.PAGESIZE
    advice = getattr(mmap, "MADV_DONTNEED", _MADV_DONTNEED)

    def release(block: np.ndarray) -> None:
        first, last = _address_range(block)
        for start, end in ranges:
            aligned_low = -(-max(start, first) // page) * page
            aligned_high = min(end, last) // page * page
            if aligned_low < aligned_high:
                libc.madvise(aligned_low, aligned_high - aligned_low, advice)

    return release


def _f32(tensor: np.ndarray, block_floats: int) -> Iterable[bytes]:
    """A float32 tensor's bytes, little-endian, a block at a time."""
    for block in _blocks(_flat(tensor), 1, block_floats):
        yield np.ascontiguousarray(block, dtype="<f4").tobytes()


def _q8(tensor: np.ndarray, group: int, block_floats: int) -> Iterable[bytes]:
    """A (rows, cols) tensor in Q8_0, as quantize_q80 gives it whole: all int8 values, then all scales. The int8
    values leave block by block; the scales (one float32 per group) wait for the end of the tensor."""
    flat = _flat(tensor)
    scales = np.empty(flat.size // group, dtype="<f4")
    done = 0
    for block in _blocks(flat, group, block_floats):
        quantized = quantize_q80(block.reshape(-1, group), group)
        yield quantized.q.tobytes()
        scales[done:done + quantized.s.size] = quantized.s.reshape(-1)
        done += quantized.s.size
    yield from _f32(scales, block_floats)


def _ternary_scale(flat: np.ndarray, block_floats: int) -> np.float32:
    """quantize_ternary's scale, float32(mean |W|) summed in float64, from blocks. Bit for bit the whole tensor's
    np.mean(np.abs(w), dtype=np.float64): numpy casts float32 to float64 through a buffer of np.getbufsize()
    values and adds each buffer's pairwise sum to the running total; blocks that are whole buffers, each added
    onto the total so far (`initial`), repeat exactly that order. tests/unit/models/test_quantize.py compares."""
    total = np.float64(0.0)
    for block in _blocks(flat, 1, block_floats):
        total = np.add.reduce(np.abs(block), dtype=np.float64, initial=total)
    return np.float32(total / flat.size)


def _ternary(tensor: np.ndarray, block_floats: int) -> Iterable[bytes]:
    """A (rows, cols) tensor in ternary as quantize_ternary and pack_ternary give it whole: the float32 scale,
    then four weights per byte."""
    flat = _flat(tensor)
    scale = _ternary_scale(flat, block_floats)
    yield struct.pack("<f", float(scale))
    for block in _blocks(flat, 4, block_floats):
        if scale == 0:
            values = np.zeros(block.shape, dtype=np.int8)
        else:  # quantize_ternary's arithmetic, value by value
            values = np.clip(np.rint((block / scale).astype(np.float32)), -1, 1).astype(np.int8)
        yield pack_ternary(values)


def _layers(w: Weights) -> Iterable[np.ndarray]:
    """wq[0..L-1], wk.., wv.., wo.., w1.., w2.., w3.. as (rows, cols) matrices (views), in file order."""
    for stack in (w.wq, w.wk, w.wv, w.wo, w.w1, w.w2, w.w3):
        yield from stack


def q8_0_chunks(config: ModelConfig, w: Weights, group: int,
                block_floats: int = BLOCK_FLOATS) -> Iterable[bytes]:
    """The bytes of a llama2.c v2 file for these float32 weights, produced `block_floats` values at a time."""
    check_group_size(config, group)
    shared = config.shared_classifier
    yield pack_header(Q8_VERSION, replace(config, group_size=group))
    for norm in (w.rms_att, w.rms_ffn, w.rms_final):
        yield from _f32(norm, block_floats)
    yield from _q8(w.token_embedding, group, block_floats)
    for matrix in _layers(w):
        yield from _q8(matrix, group, block_floats)
    if not shared:
        yield from _q8(w.classifier, group, block_floats)


def ternary_chunks(config: ModelConfig, w: Weights, ffn: str = "silu", int8_classifier: bool = False,
                   sub_att: np.ndarray | None = None, sub_ffn: np.ndarray | None = None,
                   block_floats: int = BLOCK_FLOATS) -> Iterable[bytes]:
    """The bytes of a version 98 ternary file: float32 norms and embedding, ternary wq..w3, the classifier in
    float32 or (int8_classifier) Q8_0 with one group per row, stored on its own; `block_floats` at a time."""
    if config.dim % 4 or config.hidden_dim % 4:
        raise QuantizeError(f"ternary rows pack 4 weights per byte: dim {config.dim} and hidden_dim "
                            f"{config.hidden_dim} must be multiples of 4")
    sub_norms = sub_att is not None and sub_ffn is not None
    shared = config.shared_classifier and not int8_classifier
    yield pack_header(TERNARY_VERSION, replace(config, shared_classifier=shared, ffn=ffn, sub_norms=sub_norms,
                                               classifier_type="q8_0" if int8_classifier else "fp32"))
    for norm in (w.rms_att, w.rms_ffn, w.rms_final):
        yield from _f32(norm, block_floats)
    if sub_att is not None and sub_ffn is not None:
        yield from _f32(sub_att, block_floats)
        yield from _f32(sub_ffn, block_floats)
    yield from _f32(w.token_embedding, block_floats)
    for matrix in _layers(w):
        yield from _ternary(matrix, block_floats)
    if int8_classifier:
        yield from _q8(w.classifier, config.dim, block_floats)
    elif not shared:
        yield from _f32(w.classifier, block_floats)


def load_float_checkpoint(path: Path) -> Checkpoint:
    """A v0 or v1 float32 checkpoint; anything else is a one-line QuantizeError."""
    checkpoint = load_checkpoint(path)
    if checkpoint.config.weight_type != "fp32":
        raise QuantizeError(f"{path} is already quantized ({checkpoint.config.weight_type}); "
                            f"quantize reads float32 (v0 or v1) checkpoints")
    return checkpoint


def quantize_file(src: Path, out: Path, to: str, group_size: int | None = None,
                  int8_classifier: bool = False, part_bytes: int | None = None, limit: int = PART_LIMIT,
                  block_floats: int = BLOCK_FLOATS) -> Path:
    """Convert float32 checkpoint `src` (its first part) into `out` (Q8_0 or ternary), split into parts of
    `part_bytes` or automatically from `limit` bytes (harness/formats/parts.py); returns `out`, the first part.
    `group_size` None means the default; any other value, 0 included, is checked (positive, dividing dim and
    hidden_dim). `block_floats` bounds the memory used (module docstring); the bytes do not depend on it."""
    if to not in QUANT_TYPES:
        raise UsageError(f"unknown quantization {to!r}: choose one of {', '.join(QUANT_TYPES)}")
    if group_size is not None and to != "q8_0":
        raise UsageError("--group-size applies to q8_0 only (ternary has one scale per tensor)")
    if group_size is not None and group_size <= 0:
        raise QuantizeError(f"group size {group_size} must be positive")
    if block_floats <= 0:
        raise QuantizeError(f"block size {block_floats} must be positive")
    if part_bytes is not None:
        check_part_bytes(part_bytes, limit)  # before any work
    check_output_path(out)  # the writer checks too, but only after the input is read
    checkpoint = load_float_checkpoint(src)
    config, weights = checkpoint.config, checkpoint.weights
    if to == "q8_0":
        group = default_group_size(config.dim, config.hidden_dim) if group_size is None else group_size
        write_parts(out, q8_0_chunks(config, weights, group, block_floats), part_bytes, limit)
    else:
        write_parts(out, ternary_chunks(config, weights, int8_classifier=int8_classifier,
                                        block_floats=block_floats), part_bytes, limit)
    return out




def cached_quantized(src: Path, to: str, int8_classifier: bool = True) -> Path:
    """`src` (a float32 checkpoint) quantized to `to` (ternary with the int8 classifier unless told otherwise),
    built once into cache_dir("models") beside the generated models; the name carries the source's size and
    mtime, so a changed source is quantized again."""
    from harness.core.paths import cache_dir

    if to not in QUANT_TYPES:
        raise UsageError(f"unknown quantization {to!r}: choose one of {', '.join(QUANT_TYPES)}")
    stat = src.stat()
    int8_classifier = int8_classifier and to == "ternary"
    suffix = "-cls8" if int8_classifier else ""
    path = cache_dir("models") / f"{src.stem}-{logical_size(src)}-{int(stat.st_mtime)}-{to}{suffix}.bin"
    if not path.is_file():
        quantize_file(src, path, to, int8_classifier=int8_classifier)
    return path


def write_ternary_model(path: Path, shape: ModelConfig, seed: int = 0, ffn: str = "silu", sub_norms: bool = False,
                        int8_classifier: bool = False) -> Path:
    """A generated ternary model: modelgen's seeded float32 weights, ternarized; with sub_norms, BitNet's extra
    RMSNorm weights (~1, seeded) before wo and w2; ffn "relu2" for the squared-ReLU variant."""
    from harness.models.modelgen import ModelShape, random_weights

    gen_shape = shape if isinstance(shape, ModelShape) else ModelShape(
        shape.dim, shape.hidden_dim, shape.n_layers, shape.n_heads, shape.n_kv_heads, shape.vocab_size,
        shape.seq_len, shape.shared_classifier)
    raw = random_weights(gen_shape, seed)
    weights = Weights(raw["embedding"], raw["rms_att"], raw["wq"], raw["wk"], raw["wv"], raw["wo"], raw["rms_ffn"],
                      raw["w1"], raw["w2"], raw["w3"], raw["rms_final"], raw.get("classifier", raw["embedding"]))
    sub_att = sub_ffn = None
    if sub_norms:
        rng = np.random.default_rng(seed + 1)
        sub_att = np.float32(1.0) + rng.standard_normal((shape.n_layers, shape.dim), dtype=np.float32) * 0.1
        sub_ffn = np.float32(1.0) + rng.standard_normal((shape.n_layers, shape.hidden_dim), dtype=np.float32) * 0.1
    write_parts(Path(path), ternary_chunks(gen_shape, weights, ffn, int8_classifier, sub_att, sub_ffn))
    return Path(path)
