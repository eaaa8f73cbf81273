"""The llama2.c tokenizer: load the .bin vocabulary, encode prompts by BPE, decode ids to the bytes run prints.

Everything works on bytes, not str, because llama2.c does: prompts are the raw argv bytes, pieces are C strings,
and what reaches stdout are bytes (a lone non-printable byte is dropped, so the output need not be valid UTF-8).

File format (facts from llama2.c run.c): int32 max_token_length, then per token float32 score, int32 length,
that many bytes. The file carries no token count; the model's vocab_size says how many to read.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from harness.oracle.errors import TokenizerError, describe_read_error

BOS_ID = 1
EOS_ID = 2
BYTE_TOKEN_OFFSET = 3  # <unk>, <s>, </s> come first; byte b is token b + 3
# llama2.c starts the search for the best merge at -1e10 (a float), so a pair must score strictly above it.
NO_MERGE_SCORE = np.float32(-1e10)
# What sscanf(piece, "<0x%02hhX>", &b) accepts: "<0x", optional white space, then a field of at most two
# characters: an optional sign and hex digits. The closing ">" is never checked by sscanf.
_BYTE_PIECE = re.compile(rb"<0x[ \t\n\v\f\r]*([+-]?)([0-9A-Fa-f]{1,2})")


def c_string(raw: bytes) -> bytes:
    """A piece as C sees it: everything up to the first NUL."""
    end = raw.find(b"\0")
    return raw if end < 0 else raw[:end]


def c_isprint_or_isspace(byte: int) -> bool:
    """isprint(b) || isspace(b) in the C locale, the filter llama2.c applies to single-byte pieces."""
    return 0x20 <= byte <= 0x7E or 0x09 <= byte <= 0x0D


def parse_byte_piece(piece: bytes) -> int | None:
    """The byte a piece such as b"<0x0A>" stands for, or None (mirrors the sscanf llama2.c uses)."""
    match = _BYTE_PIECE.match(piece)
    if not match:
        return None
    sign, digits = match.group(1), match.group(2)
    if sign:
        digits = digits[:1]  # the sign used one of the two characters of the field width
    value = int(digits, 16)
    return (-value if sign == b"-" else value) & 0xFF


@dataclass
class Tokenizer:
    """A loaded vocabulary with llama2.c's encode and decode."""

    path: Path
    max_token_length: int
    pieces: list[bytes]  # raw bytes as stored
    scores: np.ndarray  # float32, one per piece
    _lookup: dict[bytes, int] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.c_pieces = [c_string(piece) for piece in self.pieces]
        for index, piece in enumerate(self.c_pieces):
            # llama2.c bsearches a sorted copy; with duplicate strings any of them may be found. We keep the
            # lowest id, which is what a stable sort plus leftmost search gives.
            self._lookup.setdefault(piece, index)

    @property
    def vocab_size(self) -> int:
        return len(self.pieces)

    def lookup(self, piece: bytes) -> int:
        """Id of a piece, or -1 when it is not in the vocabulary."""
        return self._lookup.get(piece, -1)

    def piece(self, token: int) -> bytes:
        """The C-string text of a token (for messages and context)."""
        return self.c_pieces[token]

    def encode(self, text: bytes, bos: bool = True, eos: bool = False) -> list[int]:
        """Encode like llama2.c: BOS, a dummy-prefix space if text is non-empty, codepoints or byte fallback,
        then repeatedly merge the adjacent pair whose merged piece scores best (first such pair on ties)."""
        tokens: list[int] = [BOS_ID] if bos else []
        if text:
            space = self.lookup(b" ")
            if space < 0:
                raise TokenizerError(f"{self.path}: tokenizer has no ' ' piece for the dummy prefix")
            tokens.append(space)
        for codepoint in _split_codepoints(text):
            token = self.lookup(codepoint)
            if token >= 0:
                tokens.append(token)
                continue
            for byte in codepoint:
                fallback = byte + BYTE_TOKEN_OFFSET
                if fallback >= self.vocab_size:
                    raise TokenizerError(
                        f"{self.path}: byte 0x{byte:02x} has no byte-fallback token in a "
                        f"{self.vocab_size}-token vocabulary"
                    )
                tokens.append(fallback)
        self._merge(tokens)
        if eos:
            tokens.append(EOS_ID)
        return tokens

    def _merge(self, tokens: list[int]) -> None:
        scores = self.scores
        while True:
            best_score = NO_MERGE_SCORE
            best_id = -1
            best_index = -1
            for index in range(len(tokens) - 1):
                merged = self.lookup(self.c_pieces[tokens[index]] + self.c_pieces[tokens[index + 1]])
                if merged >= 0 and scores[merged] > best_score:
                    best_score = scores[merged]
                    best_id = merged
                    best_index = index
            if best_index < 0:
                return
            tokens[best_index : best_index + 2] = [best_id]

    def decode(self, prev_token: int, token: int) -> bytes:
        """The bytes llama2.c prints for `token` following `prev_token` (decode + safe_printf)."""
        piece = self.c_pieces[token]
        if prev_token == BOS_ID and piece[:1] == b" ":
            piece = piece[1:]
        byte = parse_byte_piece(piece)
        if byte is not None:
            piece = bytes([byte]) if byte else b""
        if len(piece) == 1 and not c_isprint_or_isspace(piece[0]):
            return b""
        return piece

    def decode_sequence(self, tokens: list[int], first_prev: int = BOS_ID) -> bytes:
        """Concatenate decode() over a sequence, each token decoded after the one before it."""
        out = bytearray()
        prev = first_prev
        for token in tokens:
            out += self.decode(prev, token)
            prev = token
        return bytes(out)


def _split_codepoints(text: bytes) -> list[bytes]:
    """Group bytes the way llama2.c's encode loop does: a lead byte plus up to three continuation bytes."""
    groups: list[bytes] = []
    current = bytearray()
    for index, byte in enumerate(text):
        if byte & 0xC0 != 0x80:
            current = bytearray()
        current.append(byte)
        following = text[index + 1] if index + 1 < len(text) else 0
        if following & 0xC0 == 0x80 and len(current) < 4:
            continue
        groups.append(bytes(current))
        current = bytearray()
    return groups


def load_tokenizer(path: str | Path, vocab_size: int) -> Tokenizer:
    """Read vocab_size tokens from a llama2.c tokenizer file; fail with one line if it cannot hold them."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise TokenizerError(describe_read_error(path, "tokenizer", error)) from None
    if len(data) < 4:
        raise TokenizerError(f"{path}: {len(data)} bytes is too short for a tokenizer header")
    (max_token_length,) = struct.unpack_from("<i", data, 0)
    if max_token_length <= 0:
        raise TokenizerError(f"{path}: impossible max_token_length {max_token_length}")
    offset = 4
    pieces: list[bytes] = []
    scores = np.empty(vocab_size, dtype=np.float32)
    for index in range(vocab_size):
        if offset + 8 > len(data):
            raise TokenizerError(
                f"{path}: tokenizer ends after {index} tokens but the model needs {vocab_size}"
            )
        score, length = struct.unpack_from("<fi", data, offset)
        offset += 8
        if length < 0 or offset + length > len(data):
            raise TokenizerError(
                f"{path}: token {index} claims {length} bytes but the file is truncated at byte {len(data)}"
            )
        scores[index] = score
        pieces.append(data[offset : offset + length])
        offset += length
    return Tokenizer(path, max_token_length, pieces, scores)
