"""Tokenizer encode/decode against hand-derived expectations (a hand-built vocabulary) and the real tok512."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from harness.models.downloads import FixtureError, resolve
from harness.oracle import TokenizerError, load_tokenizer
from harness.oracle.tokenizer import parse_byte_piece

SPECIALS = [b"<unk>", b"\n<s>\n", b"\n</s>\n"]
BYTES = [f"<0x{b:02X}>".encode() for b in range(256)]
# piece -> score; the merge rules below are derived by hand from these scores
EXTRA = [(b" ", -100.0), (b"a", -100.0), (b"b", -100.0), (b"c", -100.0), (b"ab", -1.0), (b"bc", -1.0),
         (b"abc", -2.0), (b" a", -5.0), ("é".encode(), -100.0), (b"x", -100.0), (b"\x01", -100.0)]


def write_vocab(path: Path, entries: list[tuple[bytes, float]]) -> Path:
    data = struct.pack("<i", max(len(p) for p, _ in entries))
    for piece, score in entries:
        data += struct.pack("<fi", score, len(piece)) + piece
    path.write_bytes(data)
    return path


@pytest.fixture
def hand_vocab(tmp_path):
    entries = [(p, 0.0) for p in SPECIALS + BYTES] + EXTRA
    path = write_vocab(tmp_path / "hand.bin", entries)
    tok = load_tokenizer(path, len(entries))
    ids = {piece: index for index, (piece, _) in enumerate(entries)}
    return tok, ids


def test_merges_best_score_first_and_first_pair_on_ties(hand_vocab):
    tok, ids = hand_vocab
    # [BOS, " ", a, b, c]: " a" scores -5, "ab" -1, "bc" -1 (tie: the first pair wins) -> [BOS, " ", ab, c];
    # then "abc" (-2) -> [BOS, " ", abc]; " abc" is not a piece.
    assert tok.encode(b"abc") == [1, ids[b" "], ids[b"abc"]]
    # "a" alone: [BOS, " ", a] -> " a"
    assert tok.encode(b"a") == [1, ids[b" a"]]


def test_empty_text_is_only_bos(hand_vocab):
    tok, _ = hand_vocab
    assert tok.encode(b"") == [1]
    assert tok.encode(b"", bos=False, eos=True) == [2]


def test_codepoint_lookup_and_byte_fallback(hand_vocab):
    tok, ids = hand_vocab
    # é is a piece; € (e2 82 ac) is not, so it falls back to one token per byte (byte + 3)
    assert tok.encode("xé€".encode()) == [1, ids[b" "], ids[b"x"], ids["é".encode()], 0xE2 + 3, 0x82 + 3, 0xAC + 3]


def test_decode_rules(hand_vocab):
    tok, ids = hand_vocab
    assert tok.decode(1, ids[b" a"]) == b"a"  # leading space stripped after BOS
    assert tok.decode(ids[b"x"], ids[b" a"]) == b" a"
    assert tok.decode(ids[b"x"], 0x0A + 3) == b"\n"  # <0x0A>
    assert tok.decode(ids[b"x"], 0x41 + 3) == b"A"
    assert tok.decode(ids[b"x"], 0x07 + 3) == b""  # BEL is neither printable nor space
    assert tok.decode(ids[b"x"], 0xC3 + 3) == b""  # a lone UTF-8 lead byte is dropped in the C locale
    assert tok.decode(ids[b"x"], 0x00 + 3) == b""
    assert tok.decode(ids[b"x"], ids[b"\x01"]) == b""  # any single-byte piece is filtered, not just <0xNN>
    assert tok.decode(ids[b"x"], ids["é".encode()]) == "é".encode()


def test_byte_piece_parsing_follows_sscanf():
    assert parse_byte_piece(b"<0x0A>") == 10
    assert parse_byte_piece(b"<0xff>") == 255
    assert parse_byte_piece(b"<0x4") == 4  # sscanf never checks the closing '>'
    assert parse_byte_piece(b"<0xZZ>") is None
    assert parse_byte_piece(b"0x41") is None


def test_truncated_or_short_tokenizer_is_rejected(tmp_path):
    entries = [(p, 0.0) for p in SPECIALS + BYTES] + EXTRA
    path = write_vocab(tmp_path / "t.bin", entries)
    with pytest.raises(TokenizerError, match="ends after 270 tokens but the model needs 300"):
        load_tokenizer(path, 300)
    data = path.read_bytes()
    (tmp_path / "cut.bin").write_bytes(data[:-1])
    with pytest.raises(TokenizerError, match="truncated"):
        load_tokenizer(tmp_path / "cut.bin", len(entries))
    with pytest.raises(TokenizerError, match="not found"):
        load_tokenizer(tmp_path / "missing.bin", 10)


def test_fallback_beyond_vocab_is_an_error(tmp_path):
    entries = [(p, 0.0) for p in SPECIALS + BYTES[:100]] + [(b" ", 0.0)]
    tok = load_tokenizer(write_vocab(tmp_path / "small.bin", entries), len(entries))
    with pytest.raises(TokenizerError, match="byte-fallback"):
        tok.encode("é".encode())


@pytest.fixture(scope="module")
def tok512():
    try:
        path = resolve("tok512.bin", allow_download=False)
    except FixtureError as error:
        pytest.skip(f"real fixture unavailable: {error}")
    return path, load_tokenizer(path, 512)


def raw_pieces(path: Path, count: int) -> list[bytes]:
    """An independent reader: the tokenizer file format by struct, no oracle code."""
    data = path.read_bytes()
    offset, pieces = 4, []
    for _ in range(count):
        _, length = struct.unpack_from("<fi", data, offset)
        pieces.append(data[offset + 8 : offset + 8 + length])
        offset += 8 + length
    return pieces


def test_tok512_known_ids(tok512):
    path, tok = tok512
    pieces = raw_pieces(path, 512)
    # "a": [BOS, " ", "a"] and " a" is a piece, so one merge
    assert tok.encode(b"a") == [1, pieces.index(b" a")]
    # the 260K story's first word: " Once" is a single piece reached by merges
    assert [pieces[i] for i in tok.encode(b"Once")[1:]] == [b" Once"]


@pytest.mark.parametrize("text", ["Once upon a time", "Tom said, \"Hi!\" and ran.", "x", "  two spaces", "a\nb"])
def test_tok512_round_trip(tok512, text):
    _, tok = tok512
    ids = tok.encode(text.encode())
    assert tok.decode_sequence(ids[1:], first_prev=ids[0]) == text.encode()
    if text.isprintable():  # no byte tokens: the pieces spell the text with the dummy-prefix space
        assert "".join(tok.piece(i).decode() for i in ids[1:]) == " " + text


def test_tok512_non_ascii_uses_codepoints_or_bytes(tok512):
    _, tok = tok512
    ids = tok.encode("é日".encode())
    assert ids[2] == tok.lookup("é".encode())  # é is in tok512
    assert ids[3:] == [b + 3 for b in "日".encode()]  # 日 is not: byte fallback
    # lone bytes are not printed, the é piece is
    assert tok.decode_sequence(ids[1:], first_prev=1) == "é".encode()
