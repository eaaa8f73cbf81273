"""`llama98-harness export HF_DIR -o MODEL.bin -z TOKENIZER.bin`: a Hugging Face Llama directory to the port's
version-3 checkpoint and BPE tokenizer (ports/llama98/FORMATS.md).

Tensors stream shard by shard: each is read through the safetensors library, converted to float32, and written
at its place in the layer-contiguous layout, so memory holds one tensor at a time. Hugging Face stores q and k
rows permuted for its rotate-half RoPE; they are put back in the interleaved order llama2.c and the port use.
What the port cannot run (another model_type, bias terms, another activation or RoPE type) is refused in one
line before anything is written.
"""

from __future__ import annotations

import json
import math
import os
import struct
from pathlib import Path
from typing import Any

import numpy as np
from safetensors import SafetensorError, safe_open

from harness.core.atomic import temp_beside
from harness.core.errors import HarnessError
from harness.formats.checkpoint import RopeScaling
from harness.formats.l98m import L98Header
from harness.formats.parts import (
    PART_LIMIT,
    PartsWriter,
    check_output_path,
    check_part_bytes,
)
from harness.models.bpe_writer import (
    BpeSource,
    from_tiktoken,
    from_tokenizer_json,
    llama3_control_ids,
    write_bpe,
)

HF_NAMES = {"input_layernorm": "rms_att", "self_attn.q_proj": "wq", "self_attn.k_proj": "wk",
            "self_attn.v_proj": "wv", "self_attn.o_proj": "wo", "post_attention_layernorm": "rms_ffn",
            "mlp.gate_proj": "w1", "mlp.down_proj": "w2", "mlp.up_proj": "w3"}
IGNORED_SUFFIXES = ("rotary_emb.inv_freq",)


class ExportError(HarnessError):
    """A Hugging Face directory the exporter cannot convert (unsupported or malformed)."""


def _json(path: Path, required: bool = True) -> dict[str, Any]:
    if not path.is_file():
        if required:
            raise ExportError(f"{path}: not found")
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError) as error:
        raise ExportError(f"{path}: cannot read JSON ({error})") from None
    if not isinstance(data, dict):
        raise ExportError(f"{path}: not a JSON object")
    return data


def _int(config: dict[str, Any], key: str, path: Path, default: int | None = None) -> int:
    value = config.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ExportError(f"{path}: {key}={value!r} is not a positive integer")
    return value


def header_from_config(config: dict[str, Any], path: Path) -> L98Header:
    """The v3 header for a config.json, or ExportError naming the first unsupported setting."""
    if config.get("model_type") != "llama":
        raise ExportError(f"{path}: model_type {config.get('model_type')!r} is not supported (only llama)")
    if config.get("hidden_act", "silu") != "silu":
        raise ExportError(f"{path}: hidden_act {config.get('hidden_act')!r} is not supported (only silu)")
    for key in ("attention_bias", "mlp_bias"):
        if config.get(key):
            raise ExportError(f"{path}: {key} is set; bias terms are not supported")
    dim = _int(config, "hidden_size", path)
    heads = _int(config, "num_attention_heads", path)
    kv_heads = _int(config, "num_key_value_heads", path, heads)
    if config.get("head_dim") not in (None, dim // heads):
        raise ExportError(f"{path}: head_dim {config['head_dim']} differs from hidden_size / heads")
    scaling = None
    rope = config.get("rope_scaling")
    if rope is not None:
        kind = rope.get("rope_type", rope.get("type")) if isinstance(rope, dict) else rope
        if kind != "llama3":
            raise ExportError(f"{path}: rope_scaling type {kind!r} is not supported (only llama3)")
        try:
            scaling = RopeScaling(float(rope["factor"]), float(rope["low_freq_factor"]),
                                  float(rope["high_freq_factor"]), int(rope["original_max_position_embeddings"]))
        except (KeyError, TypeError, ValueError):
            raise ExportError(f"{path}: llama3 rope_scaling lacks a field") from None
    theta = float(config.get("rope_theta", 10000.0))
    eps = float(config.get("rms_norm_eps", 1e-5))
    if not (math.isfinite(theta) and theta > 1.0 and 0.0 < eps < 1.0):
        raise ExportError(f"{path}: rope_theta={theta} or rms_norm_eps={eps} is impossible")
    header = L98Header(dim, _int(config, "intermediate_size", path), _int(config, "num_hidden_layers", path),
                       heads, kv_heads, _int(config, "vocab_size", path),
                       _int(config, "max_position_embeddings", path), bool(config.get("tie_word_embeddings")),
                       theta, eps, scaling)
    if dim % heads or heads % kv_heads or (dim // heads) % 2:
        raise ExportError(f"{path}: hidden_size {dim}, {heads} heads and {kv_heads} kv heads do not make even "
                          f"head sizes")
    return header


def unpermute(weight: np.ndarray, heads: int) -> np.ndarray:
    """Undo Hugging Face's q/k row permutation: within each head, row j of the first half and row j of the
    second half become rows 2j and 2j+1 (the pairs the interleaved RoPE rotates)."""
    rows, cols = weight.shape
    return weight.reshape(heads, 2, rows // heads // 2, cols).transpose(0, 2, 1, 3).reshape(rows, cols)


def _port_name(hf_name: str) -> str | None:
    """The port's tensor name for a Hugging Face one; None for tensors with nothing to export."""
    if hf_name == "model.embed_tokens.weight":
        return "embedding"
    if hf_name == "model.norm.weight":
        return "rms_final"
    if hf_name == "lm_head.weight":
        return "classifier"
    if hf_name.endswith(IGNORED_SUFFIXES):
        return None
    parts = hf_name.split(".")
    if len(parts) == 5 and parts[:2] == ["model", "layers"] and parts[-1] == "weight" and parts[2].isdigit():
        short = HF_NAMES.get(parts[3])
    elif len(parts) == 6 and parts[:2] == ["model", "layers"] and parts[-1] == "weight" and parts[2].isdigit():
        short = HF_NAMES.get(".".join(parts[3:5]))
    else:
        short = None
    if short is None:
        if hf_name.endswith(".bias"):
            raise ExportError(f"tensor {hf_name}: bias terms are not supported")
        raise ExportError(f"tensor {hf_name} is not part of a Llama model")
    return f"layers.{int(parts[2])}.{short}"


def _bf16(path: Path, name: str) -> np.ndarray:
    """A BF16 tensor, which the library's numpy view cannot hold: located by the file's own header
    (u64 length + JSON with data_offsets) and widened to float32."""
    with path.open("rb") as handle:
        (length,) = struct.unpack("<Q", handle.read(8))
        entry = json.loads(handle.read(length))[name]
        begin, end = entry["data_offsets"]
        handle.seek(8 + length + begin)
        raw = np.frombuffer(handle.read(end - begin), dtype="<u2")
    return (raw.astype(np.uint32) << 16).view(np.float32).reshape(entry["shape"])


def _shards(hf_dir: Path) -> list[Path]:
    index = hf_dir / "model.safetensors.index.json"
    if index.is_file():
        weight_map = _json(index).get("weight_map")
        if not isinstance(weight_map, dict):
            raise ExportError(f"{index}: no weight_map")
        return sorted({hf_dir / str(name) for name in weight_map.values()})
    shards = sorted(hf_dir.glob("*.safetensors"))
    if not shards:
        raise ExportError(f"{hf_dir}: no *.safetensors files")
    return shards


def write_weights(hf_dir: Path, header: L98Header, sink: PartsWriter) -> None:
    """Streams every shard's tensors into `sink` (sized header.offsets()[1]) at their places; refuses missing,
    repeated or misshapen ones."""
    shapes = header.shapes()
    offsets, _size = header.offsets()
    written: set[str] = set()
    sink.write_at(0, header.pack())
    for shard in _shards(hf_dir):
        try:
            with safe_open(str(shard), framework="np") as tensors:
                for hf_name in tensors.keys():  # noqa: SIM118 (a safe_open handle is not a dict)
                    name = _port_name(hf_name)
                    if name is None or (name == "classifier" and header.shared_classifier):
                        continue
                    if name not in shapes or name in written:
                        raise ExportError(f"{shard}: tensor {hf_name} is unexpected or repeated")
                    dtype = tensors.get_slice(hf_name).get_dtype()
                    if dtype == "BF16":
                        value = _bf16(shard, hf_name)
                    elif dtype in ("F32", "F16"):
                        value = tensors.get_tensor(hf_name)
                    else:
                        raise ExportError(f"{shard}: tensor {hf_name} has dtype {dtype} (F32, F16, BF16 only)")
                    if tuple(value.shape) != shapes[name]:
                        raise ExportError(f"{shard}: tensor {hf_name} has shape {tuple(value.shape)}, the "
                                          f"config implies {shapes[name]}")
                    if name.endswith(".wq"):
                        value = unpermute(value, header.n_heads)
                    elif name.endswith(".wk"):
                        value = unpermute(value, header.n_kv_heads)
                    sink.write_at(offsets[name], np.ascontiguousarray(value, dtype="<f4").tobytes())
                    written.add(name)
        except (SafetensorError, OSError) as error:
            raise ExportError(f"{shard}: cannot read safetensors ({error})") from None
    missing = [name for name in shapes if name not in written]
    if missing:
        raise ExportError(f"{hf_dir}: tensor {missing[0]} is missing ({len(missing)} missing in all)")


def _eos_ids(*configs: dict[str, Any]) -> list[int]:
    ids: list[int] = []
    for config in configs:
        value = config.get("eos_token_id")
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, int) and item not in ids:
                ids.append(item)
    return ids


def tokenizer_source(hf_dir: Path) -> BpeSource:
    """tokenizer.json, else Meta's original/tokenizer.model tiktoken file."""
    if (hf_dir / "tokenizer.json").is_file():
        return from_tokenizer_json(hf_dir / "tokenizer.json")
    if (hf_dir / "original" / "tokenizer.model").is_file():
        return from_tiktoken(hf_dir / "original" / "tokenizer.model")
    raise ExportError(f"{hf_dir}: neither tokenizer.json nor original/tokenizer.model")


def export(hf_dir: Path, model_out: Path, tokenizer_out: Path, part_bytes: int | None = None,
           limit: int = PART_LIMIT) -> L98Header:
    """Converts a Hugging Face Llama directory; returns the header written. The checkpoint is split into parts
    of `part_bytes`, or automatically from `limit` bytes (harness/formats/parts.py); `model_out` is its first part.

    Both outputs are checked before anything is written, and both are written beside their targets and renamed
    at the end: a refusal leaves neither, and a failure of the last rename removes the model this run wrote
    (a model without its tokenizer would be run with whatever tokenizer was there before)."""
    if part_bytes is not None:
        check_part_bytes(part_bytes, limit)
    check_output_path(model_out)
    check_output_path(tokenizer_out)
    if model_out.resolve() == tokenizer_out.resolve():
        raise ExportError(f"{model_out}: the model and the tokenizer cannot be written to the same file")
    config_path = hf_dir / "config.json"
    config = _json(config_path)
    header = header_from_config(config, config_path)
    source = tokenizer_source(hf_dir)
    if len(source.tokens) > header.vocab_size:
        raise ExportError(f"{hf_dir}: the tokenizer has {len(source.tokens)} ids, the model only "
                          f"{header.vocab_size}")
    bos, eos, stops = llama3_control_ids(source)
    bos_config = config.get("bos_token_id")
    if isinstance(bos_config, int):
        bos = bos_config
    eos_list = _eos_ids(config, _json(hf_dir / "generation_config.json", required=False))
    if eos < 0 and eos_list:
        eos = eos_list[0]
    stops = [i for i in dict.fromkeys([*eos_list, *stops]) if i != eos and 0 <= i < len(source.tokens)]
    temp = _tokenizer_temp(tokenizer_out)
    try:
        try:
            write_bpe(temp, source, bos, eos, stops)
        except OSError as error:
            raise ExportError(f"cannot write {tokenizer_out}: {error.strerror or error}") from None
        with PartsWriter(model_out, header.offsets()[1], part_bytes, limit) as sink:
            write_weights(hf_dir, header, sink)
        try:
            os.replace(temp, tokenizer_out)
        except OSError as error:
            for path in sink.paths:
                path.unlink(missing_ok=True)
            raise ExportError(f"cannot write {tokenizer_out}: {error.strerror or error} (removed the model "
                              f"{model_out} written for it)") from None
    finally:
        temp.unlink(missing_ok=True)
    return header


def _tokenizer_temp(tokenizer_out: Path) -> Path:
    """An empty temporary file beside `tokenizer_out` (its directory made), with a plain open()'s permissions
    and a name no concurrent export shares (core.atomic.temp_beside)."""
    try:
        tokenizer_out.parent.mkdir(parents=True, exist_ok=True)
        handle, temp = temp_beside(tokenizer_out)
    except OSError as error:
        raise ExportError(f"cannot write {tokenizer_out}: {error.strerror or error}") from None
    handle.close()
    return temp
