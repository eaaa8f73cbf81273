"""Write the port's BPE tokenizer file (ports/llama98/FORMATS.md, "BPE tokenizer") from a Hugging Face
tokenizer.json or a tiktoken rank file (Meta's original/tokenizer.model).

The file stores tiktoken's rule: merge the pair whose concatenation has the lowest rank. A tokenizer.json states
Hugging Face's rule instead (merge the listed pair of lowest index), and the two agree only when the merges are
"rank-complete": every way of splitting a token into two tokens is listed, and the merges that make one token
are listed together. Llama 3's tokenizer.json (converted from tiktoken) is; a vocabulary fresh from a BPE trainer
usually is not, so such a file is refused in one line rather than written with a different encoding.
The exporter (harness/models/export_hf.py) uses this module; the oracle's reader is separate code.
"""

from __future__ import annotations

import base64
import binascii
import json
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.core.errors import HarnessError

LLAMA3_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+"
    r"|\s+(?!\S)|\s+"
)
MAGIC = b"L98B"
VERSION = 1
PRETOKENIZER_LLAMA3 = 1
FLAG_WHOLE_PIECE = 1
RANK_SPECIAL = -1
RANK_UNUSED = -2
MAX_TOKENS = 1 << 24
MAX_TOKEN_BYTES = 65536
# Meta's Llama 3.1/3.2 special tokens, in id order after the ranked tokens; the rest of the 256 are reserved.
LLAMA3_SPECIALS = [
    "<|begin_of_text|>", "<|end_of_text|>", "<|reserved_special_token_0|>", "<|reserved_special_token_1|>",
    "<|finetune_right_pad_id|>", "<|step_id|>", "<|start_header_id|>", "<|end_header_id|>", "<|eom_id|>",
    "<|eot_id|>", "<|python_tag|>",
]
LLAMA3_SPECIAL_COUNT = 256
LLAMA3_BOS = "<|begin_of_text|>"
LLAMA3_EOS = "<|end_of_text|>"
LLAMA3_STOPS = ("<|eot_id|>", "<|eom_id|>")


class BpeWriteError(HarnessError):
    """A tokenizer source cannot be written as a BPE tokenizer file (unsupported or malformed)."""


@dataclass
class BpeSource:
    """A byte-level BPE vocabulary in id order: bytes and rank per id (None = unused id)."""

    tokens: list[bytes | None]
    ranks: list[int]
    whole_piece: bool

    def id_of(self, text: str) -> int | None:
        """The id whose token is the UTF-8 of `text`, or None."""
        wanted = text.encode("utf-8")
        return next((i for i, t in enumerate(self.tokens) if t == wanted), None)


def byte_symbols() -> dict[str, int]:
    """The byte-level alphabet (GPT-2's): printable Latin-1 bytes stand for themselves, the other bytes for
    U+0100 upwards in byte order. Maps each symbol to its byte."""
    keep = [*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAC + 1), *range(0xAE, 0xFF + 1)]
    symbols = {chr(b): b for b in keep}
    extra = 0
    for b in range(256):
        if b not in keep:
            symbols[chr(256 + extra)] = b
            extra += 1
    return symbols


def _symbols_to_bytes(token: str, symbols: dict[str, int], path: Path) -> bytes:
    try:
        return bytes(symbols[c] for c in token)
    except KeyError:
        raise BpeWriteError(f"{path}: token {token!r} is not byte-level (not a ByteLevel BPE vocabulary)") from None


def _load_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as error:
        raise BpeWriteError(f"{path}: cannot read tokenizer.json: {error.strerror}") from None
    except (ValueError, UnicodeDecodeError) as error:
        raise BpeWriteError(f"{path}: not a JSON file ({error})") from None
    if not isinstance(data, dict):
        raise BpeWriteError(f"{path}: not a tokenizer.json (top level is not an object)")
    return data


def _check_pipeline(data: dict[str, Any], path: Path) -> None:
    """Refuses a tokenizer.json whose pipeline is not Llama 3's (Split by the Llama 3 regex, then ByteLevel)."""
    model = data.get("model") or {}
    if model.get("type") != "BPE":
        raise BpeWriteError(f"{path}: model type {model.get('type')!r} is not supported (only BPE)")
    if data.get("normalizer") is not None:
        raise BpeWriteError(f"{path}: a normalizer is not supported (Llama 3 has none)")
    pre = data.get("pre_tokenizer") or {}
    steps = pre.get("pretokenizers", []) if pre.get("type") == "Sequence" else [pre]
    kinds = [s.get("type") for s in steps]
    if kinds != ["Split", "ByteLevel"]:
        raise BpeWriteError(f"{path}: pre-tokenizer {kinds} is not supported (Llama 3: Split then ByteLevel)")
    split, byte_level = steps
    if (split.get("pattern") or {}).get("Regex") != LLAMA3_PATTERN or split.get("behavior") != "Isolated" \
            or split.get("invert"):
        raise BpeWriteError(f"{path}: the Split pre-tokenizer is not the Llama 3 regex")
    if byte_level.get("add_prefix_space") or byte_level.get("use_regex"):
        raise BpeWriteError(f"{path}: ByteLevel with a prefix space or its own regex is not supported")
    if model.get("byte_fallback") or model.get("dropout") or model.get("continuing_subword_prefix") \
            or model.get("end_of_word_suffix"):
        raise BpeWriteError(f"{path}: BPE options other than ignore_merges are not supported")


def _merge_pairs(model: dict[str, Any], path: Path) -> list[tuple[str, str]]:
    pairs: list[tuple[str, str]] = []
    for merge in model.get("merges", []):
        parts = merge.split(" ") if isinstance(merge, str) else merge
        if not isinstance(parts, list) or len(parts) != 2 or not all(isinstance(p, str) for p in parts):
            raise BpeWriteError(f"{path}: merge {merge!r} is not a pair")
        pairs.append((parts[0], parts[1]))
    return pairs


def _ranks_from_merges(vocab: dict[str, int], pairs: list[tuple[str, str]], path: Path) -> dict[str, int]:
    """Token -> rank (the index of the first merge that makes it), after checking rank-completeness."""
    made: dict[str, int] = {}
    last_group = ""
    for index, (left, right) in enumerate(pairs):
        token = left + right
        if left not in vocab or right not in vocab or token not in vocab:
            raise BpeWriteError(f"{path}: merge {left!r} {right!r} names a token that is not in the vocabulary")
        if token in made and token != last_group:
            raise BpeWriteError(f"{path}: the merges making {token!r} are not listed together, so Hugging Face "
                                f"and tiktoken rules would differ")
        made.setdefault(token, index)
        last_group = token
    listed = set(pairs)
    for token in vocab:
        for cut in range(1, len(token)):
            left, right = token[:cut], token[cut:]
            if left in vocab and right in vocab and (left, right) not in listed:
                raise BpeWriteError(f"{path}: merges are not rank-complete ({left!r} + {right!r} = {token!r} is "
                                    f"missing), so Hugging Face and tiktoken rules would differ")
    return made


def from_tokenizer_json(path: Path) -> BpeSource:
    """A Hugging Face tokenizer.json (Llama 3 style byte-level BPE) as a BpeSource, ids unchanged."""
    path = Path(path)
    data = _load_json(path)
    _check_pipeline(data, path)
    model = data["model"]
    vocab: dict[str, int] = model.get("vocab") or {}
    if not isinstance(vocab, dict) or not all(isinstance(i, int) and 0 <= i < MAX_TOKENS for i in vocab.values()):
        raise BpeWriteError(f"{path}: the vocabulary is not a map of tokens to ids")
    if len(set(vocab.values())) != len(vocab):
        raise BpeWriteError(f"{path}: two vocabulary tokens share an id")
    pairs = _merge_pairs(model, path)
    made = _ranks_from_merges(vocab, pairs, path)
    symbols = byte_symbols()
    added = data.get("added_tokens") or []
    if not isinstance(added, list) or not all(isinstance(a, dict) and isinstance(a.get("id"), int)
                                              and 0 <= a["id"] < MAX_TOKENS and isinstance(a.get("content"), str)
                                              for a in added):
        raise BpeWriteError(f"{path}: added_tokens is not a list of {{id, content}} entries")
    size = max([*vocab.values(), *(int(a["id"]) for a in added)], default=-1) + 1
    if not 256 <= size <= MAX_TOKENS:
        raise BpeWriteError(f"{path}: {size} ids is outside 256..{MAX_TOKENS}")
    tokens: list[bytes | None] = [None] * size
    ranks = [RANK_UNUSED] * size
    unranked = len(pairs)  # tokens no merge makes (single bytes): never a merge result, any rank will do
    for token, token_id in vocab.items():
        tokens[token_id] = _symbols_to_bytes(token, symbols, path)
        ranks[token_id] = made.get(token, unranked + token_id)
    merged = sorted((i for i, t in enumerate(tokens) if t is not None and len(t) > 1 and ranks[i] < unranked),
                    key=lambda i: ranks[i])
    if merged == sorted(merged):
        # Merge order is id order (Llama 3, converted from tiktoken): the ids are the ranks, as in its rank file.
        ranks = [i if r >= 0 else r for i, r in enumerate(ranks)]
    for entry in added:
        if not entry.get("special"):
            raise BpeWriteError(f"{path}: added token {entry.get('content')!r} is not special (not supported)")
        token_id = int(entry["id"])
        tokens[token_id] = str(entry["content"]).encode("utf-8")
        ranks[token_id] = RANK_SPECIAL
    return BpeSource(tokens, ranks, bool(model.get("ignore_merges")))


def from_tiktoken(path: Path, specials: list[str] | None = None) -> BpeSource:
    """A tiktoken rank file ("base64 rank" lines) plus special tokens after the last rank (Llama 3's by default:
    the named ones, then reserved ones up to 256). Ids are the ranks."""
    path = Path(path)
    try:
        lines = Path(path).read_bytes().splitlines()
    except OSError as error:
        raise BpeWriteError(f"{path}: cannot read tiktoken file: {error.strerror}") from None
    ranked: dict[int, bytes] = {}
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        fields = line.split()
        try:
            token, rank = base64.b64decode(fields[0], validate=True), int(fields[1])
        except (IndexError, ValueError, binascii.Error):
            raise BpeWriteError(f"{path}:{number}: not a tiktoken rank line") from None
        if len(fields) != 2 or rank < 0 or rank in ranked:
            raise BpeWriteError(f"{path}:{number}: not a tiktoken rank line (or a repeated rank)")
        ranked[rank] = token
    if specials is None:
        specials = LLAMA3_SPECIALS + [f"<|reserved_special_token_{i}|>"
                                      for i in range(2, 2 + LLAMA3_SPECIAL_COUNT - len(LLAMA3_SPECIALS))]
    base = max(ranked, default=-1) + 1
    tokens: list[bytes | None] = [ranked.get(i) for i in range(base)]
    ranks = [i if ranked.get(i) is not None else RANK_UNUSED for i in range(base)]
    tokens += [s.encode("utf-8") for s in specials]
    ranks += [RANK_SPECIAL] * len(specials)
    return BpeSource(tokens, ranks, whole_piece=True)


def llama3_control_ids(source: BpeSource) -> tuple[int, int, list[int]]:
    """BOS, EOS and the stop ids of a Llama 3 vocabulary, found by their text (-1 / absent when missing)."""
    bos = source.id_of(LLAMA3_BOS)
    eos = source.id_of(LLAMA3_EOS)
    stops = [i for i in (source.id_of(s) for s in LLAMA3_STOPS) if i is not None]
    return (-1 if bos is None else bos), (-1 if eos is None else eos), stops


def _validate(source: BpeSource) -> None:
    size = len(source.tokens)
    if not 256 <= size <= MAX_TOKENS:
        raise BpeWriteError(f"{size} ids is outside 256..{MAX_TOKENS}")
    seen: set[bytes] = set()
    for token, rank in zip(source.tokens, source.ranks):
        if token is None:
            continue
        if not 1 <= len(token) <= MAX_TOKEN_BYTES:
            raise BpeWriteError(f"a token of {len(token)} bytes is outside 1..{MAX_TOKEN_BYTES}")
        if rank >= 0:
            if token in seen:
                raise BpeWriteError(f"token {token!r} appears twice")
            seen.add(token)
        elif rank == RANK_SPECIAL:
            try:
                token.decode("utf-8")
            except UnicodeDecodeError:
                raise BpeWriteError(f"special token {token!r} is not UTF-8") from None
    missing = [b for b in range(256) if bytes([b]) not in seen]
    if missing:
        raise BpeWriteError(f"no token for byte 0x{missing[0]:02X} (not a byte-level vocabulary)")


def write_bpe(path: Path, source: BpeSource, bos_id: int, eos_id: int, stop_ids: list[int]) -> None:
    """Writes `source` as a BPE tokenizer file."""
    _validate(source)
    size = len(source.tokens)
    for token_id in (bos_id, eos_id, *stop_ids):
        if not -1 <= token_id < size:
            raise BpeWriteError(f"control id {token_id} is outside -1..{size - 1}")
    longest = max(len(t) for t in source.tokens if t is not None)
    flags = FLAG_WHOLE_PIECE if source.whole_piece else 0
    chunks = [MAGIC, struct.pack("<8i", VERSION, size, longest, PRETOKENIZER_LLAMA3, flags, bos_id, eos_id,
                                 len(stop_ids)), struct.pack(f"<{len(stop_ids)}i", *stop_ids)]
    for token, rank in zip(source.tokens, source.ranks):
        body = token if token is not None and rank != RANK_UNUSED else b""
        chunks.append(struct.pack("<2i", rank if body or rank == RANK_UNUSED else RANK_UNUSED, len(body)))
        chunks.append(body)
    Path(path).write_bytes(b"".join(chunks))
