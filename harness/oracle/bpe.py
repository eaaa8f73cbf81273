"""The oracle's byte-level BPE tokenizer (Llama 3): reads the port's BPE tokenizer file and encodes like tiktoken.

This is deliberately separate from the writer (harness/models/bpe_writer.py) and from the C port (bpe.c): it reads
the file with its own parser, splits with the `regex` module running the Llama 3 pattern itself, and merges by
rank with a plain Python loop, so a mistake in one of them shows up as a difference in the fuzz test.
Format and encoding rules: ports/llama98/FORMATS.md, "BPE tokenizer".
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path

import regex

from harness.oracle.errors import TokenizerError, describe_read_error

LLAMA3_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+"
    r"|\s+(?!\S)|\s+"
)
MAGIC = b"L98B"
VERSION = 1
RANK_SPECIAL = -1
RANK_UNUSED = -2
FLAG_WHOLE_PIECE = 1
_SPLIT = regex.compile(LLAMA3_PATTERN)


@dataclass
class BpeVocab:
    """A loaded BPE tokenizer file: per-id bytes and ranks, plus the run-control ids."""

    tokens: list[bytes]
    ranks: list[int]
    bos_id: int
    eos_id: int
    stop_ids: list[int]
    whole_piece: bool
    _by_bytes: dict[bytes, int] = field(default_factory=dict, repr=False)
    _specials: list[int] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        self._by_bytes = {t: i for i, t in enumerate(self.tokens) if self.ranks[i] >= 0}
        self._specials = sorted((i for i, r in enumerate(self.ranks) if r == RANK_SPECIAL),
                                key=lambda i: (-len(self.tokens[i]), i))

    def encode(self, text: bytes, allow_special: bool = False) -> list[int]:
        """Ids of `text` (bytes; invalid UTF-8 is replaced the way Python's errors="replace" does). No BOS."""
        clean = text.decode("utf-8", errors="replace")
        if not allow_special or not self._specials:
            return self._encode_span(clean)
        out: list[int] = []
        specials = [(self.tokens[i].decode("utf-8"), i) for i in self._specials]
        start = pos = 0
        while pos < len(clean):
            hit = next(((s, i) for s, i in specials if clean.startswith(s, pos)), None)
            if hit is None:
                pos += 1
                continue
            out += self._encode_span(clean[start:pos])
            out.append(hit[1])
            pos += len(hit[0])
            start = pos
        return out + self._encode_span(clean[start:])

    def _encode_span(self, text: str) -> list[int]:
        out: list[int] = []
        for piece in _SPLIT.findall(text):
            out += self._merge(piece.encode("utf-8"))
        return out

    def _merge(self, piece: bytes) -> list[int]:
        whole = self._by_bytes.get(piece)
        if whole is not None and (self.whole_piece or len(piece) == 1):
            return [whole]
        parts = [piece[i:i + 1] for i in range(len(piece))]
        while len(parts) > 1:
            best, best_rank = -1, None
            for i in range(len(parts) - 1):
                token = self._by_bytes.get(parts[i] + parts[i + 1])
                if token is not None and (best_rank is None or self.ranks[token] < best_rank):
                    best, best_rank = i, self.ranks[token]
            if best < 0:
                break
            parts[best:best + 2] = [parts[best] + parts[best + 1]]
        return [self._by_bytes[p] for p in parts]

    def decode(self, ids: list[int]) -> bytes:
        """The bytes of the tokens, concatenated."""
        return b"".join(self.tokens[i] for i in ids)

    def is_stop(self, token: int) -> bool:
        """True when `token` ends a run."""
        return token == self.eos_id or token in self.stop_ids


def _ints(data: bytes, offset: int, count: int, path: Path, what: str) -> tuple[int, ...]:
    end = offset + 4 * count
    if end > len(data):
        raise TokenizerError(f"{path}: BPE tokenizer is truncated in {what}")
    return struct.unpack_from(f"<{count}i", data, offset)


def load_bpe(path: Path) -> BpeVocab:
    """Reads and validates a BPE tokenizer file; any fault is one TokenizerError line naming the file."""
    try:
        data = Path(path).read_bytes()
    except OSError as error:
        raise TokenizerError(describe_read_error(path, "tokenizer", error)) from None
    if data[:4] != MAGIC:
        raise TokenizerError(f"{path}: not a BPE tokenizer (no L98B magic)")
    version, n_tokens, max_bytes, pretokenizer, flags, bos, eos, n_stop = _ints(data, 4, 8, path, "the header")
    if version != VERSION:
        raise TokenizerError(f"{path}: BPE tokenizer version {version}, expected {VERSION}")
    if not 256 <= n_tokens <= 1 << 24 or not 1 <= max_bytes <= 65536 or pretokenizer != 1 or flags & ~1:
        raise TokenizerError(f"{path}: impossible BPE tokenizer header")
    if not 0 <= n_stop <= n_tokens or not all(-1 <= v < n_tokens for v in (bos, eos)):
        raise TokenizerError(f"{path}: BPE tokenizer ids out of range")
    stops = list(_ints(data, 36, n_stop, path, "the stop ids"))
    if not all(0 <= s < n_tokens for s in stops):
        raise TokenizerError(f"{path}: BPE tokenizer stop id out of range")
    offset = 36 + 4 * n_stop
    tokens: list[bytes] = []
    ranks: list[int] = []
    for token in range(n_tokens):
        rank, length = _ints(data, offset, 2, path, f"token {token}")
        offset += 8
        low = 0 if rank == RANK_UNUSED else 1
        high = 0 if rank == RANK_UNUSED else max_bytes
        if rank < RANK_UNUSED or not low <= length <= high or offset + length > len(data):
            raise TokenizerError(f"{path}: BPE token {token} is malformed")
        tokens.append(data[offset:offset + length])
        ranks.append(rank)
        offset += length
    if offset != len(data):
        raise TokenizerError(f"{path}: {len(data) - offset} bytes after the last BPE token")
    ordinary = [t for t, r in zip(tokens, ranks) if r >= 0]
    if len(set(ordinary)) != len(ordinary):
        raise TokenizerError(f"{path}: two BPE tokens have the same bytes")
    if not {bytes([b]) for b in range(256)} <= set(ordinary):
        raise TokenizerError(f"{path}: BPE tokenizer lacks a token for some byte")
    return BpeVocab(tokens, ranks, bos, eos, stops, bool(flags & FLAG_WHOLE_PIECE))
