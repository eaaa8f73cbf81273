"""Tiny Llama-3.2-style Hugging Face directories for the exporter tests, and an independent reference forward.

A directory holds config.json (llama3 rope scaling, rope_theta 500000, tied embeddings, GQA), the weights in
safetensors shards (with an index) in F32, F16 or BF16, generation_config.json and a tokenizer.json built like
Llama 3's (tests/support/bpe_vocab.py). The reference forward works on the Hugging Face tensors as they are stored:
rotate-half RoPE on permuted q/k rows, Hugging Face's llama3 frequency rule, float64 throughout, so it shares
nothing with the oracle but the maths.
"""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import save_file

from tests.support.bpe_vocab import SharedVocab, build

CONFIG: dict[str, Any] = {
    "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_act": "silu", "hidden_size": 64,
    "intermediate_size": 96, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
    "head_dim": 16, "max_position_embeddings": 131072, "rms_norm_eps": 1e-5, "rope_theta": 500000.0,
    "rope_scaling": {"factor": 32.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                     "original_max_position_embeddings": 8192, "rope_type": "llama3"},
    "tie_word_embeddings": True, "attention_bias": False, "mlp_bias": False, "torch_dtype": "bfloat16",
}


def hf_tensors(config: dict[str, Any], seed: int) -> dict[str, np.ndarray]:
    """Random float32 weights with Hugging Face names (scaled so the logits are not flat)."""
    rng = np.random.default_rng(seed)
    d, h, v = config["hidden_size"], config["intermediate_size"], config["vocab_size"]
    kv = d // config["num_attention_heads"] * config["num_key_value_heads"]

    def mat(rows: int, cols: int) -> np.ndarray:
        return (rng.standard_normal((rows, cols)) / math.sqrt(cols)).astype(np.float32)

    out = {"model.embed_tokens.weight": rng.standard_normal((v, d)).astype(np.float32),
           "model.norm.weight": (1 + 0.1 * rng.standard_normal(d)).astype(np.float32)}
    for i in range(config["num_hidden_layers"]):
        p = f"model.layers.{i}."
        out.update({p + "input_layernorm.weight": (1 + 0.1 * rng.standard_normal(d)).astype(np.float32),
                    p + "post_attention_layernorm.weight": (1 + 0.1 * rng.standard_normal(d)).astype(np.float32),
                    p + "self_attn.q_proj.weight": mat(d, d), p + "self_attn.k_proj.weight": mat(kv, d),
                    p + "self_attn.v_proj.weight": mat(kv, d), p + "self_attn.o_proj.weight": mat(d, d),
                    p + "mlp.gate_proj.weight": mat(h, d), p + "mlp.up_proj.weight": mat(h, d),
                    p + "mlp.down_proj.weight": mat(d, h)})
    if not config.get("tie_word_embeddings"):
        out["lm_head.weight"] = mat(v, d)
    return out


def to_bf16(x: np.ndarray) -> np.ndarray:
    """Round-to-nearest-even float32 -> bfloat16 bits (uint16)."""
    bits = x.astype(np.float32).view(np.uint32).astype(np.uint64)
    return ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint16)


def from_bf16(bits: np.ndarray) -> np.ndarray:
    return (bits.astype(np.uint32) << 16).view(np.float32)


def save_bf16(tensors: dict[str, np.ndarray], path: Path) -> None:
    """A BF16 safetensors file (the numpy API has no bfloat16), written per the format: u64 header length,
    JSON header with dtype/shape/data_offsets, then the data."""
    header: dict[str, Any] = {}
    blobs = []
    offset = 0
    for name, value in tensors.items():
        blob = to_bf16(value).tobytes()
        header[name] = {"dtype": "BF16", "shape": list(value.shape), "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    path.write_bytes(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def make_hf_dir(directory: Path, vocab: SharedVocab | None = None, dtype: str = "F32", shards: int = 2,
                seed: int = 1, **overrides: Any) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Writes a tiny HF Llama directory; returns the tensors as stored (after dtype rounding) and the config."""
    directory.mkdir(parents=True, exist_ok=True)
    if vocab is None:
        vocab = build(directory / "vocab", vocab_size=500)
    (directory / "tokenizer.json").write_bytes(vocab.tokenizer_json.read_bytes())
    config = {**CONFIG, "vocab_size": len(vocab.ranks) + len(vocab.specials),
              "bos_token_id": vocab.specials["<|begin_of_text|>"],
              "eos_token_id": vocab.specials["<|end_of_text|>"], **overrides}
    (directory / "config.json").write_text(json.dumps(config))
    (directory / "generation_config.json").write_text(json.dumps(
        {"bos_token_id": config["bos_token_id"],
         "eos_token_id": [vocab.specials[s] for s in ("<|end_of_text|>", "<|eom_id|>", "<|eot_id|>")]}))
    tensors = hf_tensors(config, seed)
    names = list(tensors)
    weight_map: dict[str, str] = {}
    stored: dict[str, np.ndarray] = {}
    for index in range(shards):
        part = {n: tensors[n] for n in names[index::shards]}
        file = f"model-{index + 1:05d}-of-{shards:05d}.safetensors"
        if dtype == "BF16":
            save_bf16(part, directory / file)
            stored.update({n: from_bf16(to_bf16(t)) for n, t in part.items()})
        else:
            cast = {n: t.astype(np.float16 if dtype == "F16" else np.float32) for n, t in part.items()}
            save_file(cast, str(directory / file))
            stored.update({n: t.astype(np.float32) for n, t in cast.items()})
        weight_map.update({n: file for n in part})
    (directory / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    return stored, config


def hf_inv_freq(config: dict[str, Any]) -> np.ndarray:
    """Hugging Face's llama3 inverse frequencies (as its rope init computes them), in float64."""
    head = config["hidden_size"] // config["num_attention_heads"]
    inv = 1.0 / (config["rope_theta"] ** (np.arange(0, head, 2) / head))
    rope = config.get("rope_scaling")
    if not rope:
        return inv
    factor, low, high = rope["factor"], rope["low_freq_factor"], rope["high_freq_factor"]
    old = rope["original_max_position_embeddings"]
    wavelen = 2 * math.pi / inv
    scaled = np.where(wavelen > old / low, inv / factor, inv)
    smooth = (old / wavelen - low) / (high - low)
    smoothed = (1 - smooth) * scaled / factor + smooth * scaled
    medium = (wavelen >= old / high) & (wavelen <= old / low)
    return np.where(medium, smoothed, scaled)


def hf_forward(tensors: dict[str, np.ndarray], config: dict[str, Any], tokens: list[int]) -> np.ndarray:
    """Logits (len(tokens), vocab) of Hugging Face's LlamaForCausalLM maths, float64."""
    t = {n: v.astype(np.float64) for n, v in tensors.items()}
    d, heads, kv_heads = config["hidden_size"], config["num_attention_heads"], config["num_key_value_heads"]
    hs, eps, n = d // heads, config["rms_norm_eps"], len(tokens)
    freqs = np.outer(np.arange(n), hf_inv_freq(config))
    cos, sin = np.cos(np.concatenate([freqs, freqs], -1)), np.sin(np.concatenate([freqs, freqs], -1))

    def norm(x: np.ndarray, w: np.ndarray) -> np.ndarray:
        return w * (x / np.sqrt((x * x).mean(-1, keepdims=True) + eps))

    def rope(x: np.ndarray) -> np.ndarray:  # (heads, n, hs)
        half = hs // 2
        rotated = np.concatenate([-x[..., half:], x[..., :half]], -1)
        return x * cos + rotated * sin

    x = t["model.embed_tokens.weight"][tokens]
    mask = np.triu(np.full((n, n), -np.inf), 1)
    for i in range(config["num_hidden_layers"]):
        p = f"model.layers.{i}."
        h = norm(x, t[p + "input_layernorm.weight"])
        q = rope((h @ t[p + "self_attn.q_proj.weight"].T).reshape(n, heads, hs).transpose(1, 0, 2))
        k = rope((h @ t[p + "self_attn.k_proj.weight"].T).reshape(n, kv_heads, hs).transpose(1, 0, 2))
        v = (h @ t[p + "self_attn.v_proj.weight"].T).reshape(n, kv_heads, hs).transpose(1, 0, 2)
        k, v = np.repeat(k, heads // kv_heads, 0), np.repeat(v, heads // kv_heads, 0)
        scores = q @ k.transpose(0, 2, 1) / math.sqrt(hs) + mask
        weights = np.exp(scores - scores.max(-1, keepdims=True))
        weights /= weights.sum(-1, keepdims=True)
        x = x + (weights @ v).transpose(1, 0, 2).reshape(n, d) @ t[p + "self_attn.o_proj.weight"].T
        h = norm(x, t[p + "post_attention_layernorm.weight"])
        gate = h @ t[p + "mlp.gate_proj.weight"].T
        up = h @ t[p + "mlp.up_proj.weight"].T
        x = x + (gate / (1 + np.exp(-gate)) * up) @ t[p + "mlp.down_proj.weight"].T
    x = norm(x, t["model.norm.weight"])
    head = t.get("lm_head.weight", t["model.embed_tokens.weight"])
    return x @ head.T
