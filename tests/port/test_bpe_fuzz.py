"""The byte-level BPE tokenizers against each other on a seeded fuzz corpus: the C port (bpetool), the oracle
(harness/oracle/bpe.py), Hugging Face `tokenizers` (tokenizer.json) and `tiktoken` (the same ranks and regex).

Invalid UTF-8: the references take text only, so their input is the bytes decoded with errors="replace"
(ports/llama98/FORMATS.md); the port and the oracle get the raw bytes.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from tokenizers import Regex, pre_tokenizers

from harness.models.bpe_writer import LLAMA3_PATTERN
from harness.oracle.bpe import BpeVocab, load_bpe
from harness.port import unicode_tables
from tests.support.bpe_corpus import INVALID, Corpus
from tests.support.bpe_helpers import build_bpetool, port_encode, write_port_tokenizer
from tests.support.bpe_vocab import SharedVocab, build
from tests.support.port_helpers import WINE_MISSING, wine_command

FUZZ_STRINGS = 10_000
FUZZ_SEED = 20261129


@pytest.fixture(scope="module")
def vocab(tmp_path_factory: pytest.TempPathFactory) -> SharedVocab:
    return build(tmp_path_factory.mktemp("vocab"))


@pytest.fixture(scope="module")
def port_tokenizer(vocab: SharedVocab, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_port_tokenizer(vocab, tmp_path_factory.mktemp("tok") / "tokenizer.bin")


@pytest.fixture(scope="module")
def bpetool(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_bpetool("native", tmp_path_factory.mktemp("native"))


@pytest.fixture(scope="module")
def asan(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_bpetool("native-asan", tmp_path_factory.mktemp("asan"))


@pytest.fixture(scope="module")
def oracle(port_tokenizer: Path) -> BpeVocab:
    return load_bpe(port_tokenizer)


def _texts(strings: list[bytes]) -> list[str]:
    return [s.decode("utf-8", errors="replace") for s in strings]


def _differences(strings: list[bytes], results: dict[str, list[list[int]]]) -> list[str]:
    names = sorted(results)
    out = []
    for i, s in enumerate(strings):
        if len({tuple(results[n][i]) for n in names}) > 1:
            out.append(f"{s!r}: " + "; ".join(f"{n}={results[n][i]}" for n in names))
    return out


def test_fuzz_port_oracle_tokenizers_tiktoken_agree(vocab: SharedVocab, port_tokenizer: Path, bpetool: Path,
                                                    oracle: BpeVocab) -> None:
    strings = Corpus(FUZZ_SEED).strings(FUZZ_STRINGS)
    texts = _texts(strings)
    assert sum(s != t.encode() for s, t in zip(strings, texts)) > 100, "the corpus must hold invalid UTF-8"
    results = {
        "port": port_encode([str(bpetool)], port_tokenizer, strings),
        "oracle": [oracle.encode(s) for s in strings],
        "tokenizers": [e.ids for e in vocab.hf.encode_batch(texts, add_special_tokens=False)],
        "tiktoken": [vocab.tt.encode_ordinary(t) for t in texts],
    }
    differences = _differences(strings, results)
    print(f"BPE fuzz: {len(strings)} strings, {sum(map(len, results['port']))} tokens, "
          f"{len(differences)} differences")
    assert differences == [], "\n".join(differences[:10])


def test_fuzz_with_special_tokens(vocab: SharedVocab, port_tokenizer: Path, bpetool: Path,
                                  oracle: BpeVocab) -> None:
    specials = list(vocab.specials)
    corpus = Corpus(FUZZ_SEED + 1)
    strings = [corpus.string() + specials[i % len(specials)].encode() + corpus.string() + b"<|eot_id|><|eot_id"
               for i in range(1000)]
    texts = _texts(strings)
    results = {
        "port": port_encode([str(bpetool)], port_tokenizer, strings, specials=True),
        "oracle": [oracle.encode(s, allow_special=True) for s in strings],
        "tokenizers": [e.ids for e in vocab.hf.encode_batch(texts, add_special_tokens=False)],
        "tiktoken": [vocab.tt.encode(t, allowed_special="all") for t in texts],
    }
    assert _differences(strings, results) == []
    assert all(vocab.specials["<|eot_id|>"] in ids for ids in results["port"])


def test_specials_are_plain_text_unless_allowed(port_tokenizer: Path, bpetool: Path, vocab: SharedVocab) -> None:
    text = "<|begin_of_text|>Hi"
    plain = port_encode([str(bpetool)], port_tokenizer, [text.encode()])[0]
    assert vocab.specials["<|begin_of_text|>"] not in plain
    assert plain == vocab.tt.encode_ordinary(text)


def test_decode_round_trips_valid_text(port_tokenizer: Path, bpetool: Path, oracle: BpeVocab,
                                       vocab: SharedVocab) -> None:
    strings = Corpus(FUZZ_SEED + 2).strings(300)
    ids = port_encode([str(bpetool)], port_tokenizer, strings)
    for s, token_ids in zip(strings, ids):
        clean = s.decode("utf-8", errors="replace")
        assert oracle.decode(token_ids) == clean.encode()
        assert vocab.hf.decode(token_ids) == clean
    flat = " ".join(str(i) for row in ids for i in row)
    decoded = subprocess.run([str(bpetool), str(port_tokenizer), "-d"], input=flat.encode(), capture_output=True,
                             timeout=60, check=True).stdout
    assert decoded == b"".join(s.decode("utf-8", errors="replace").encode() for s in strings)


@pytest.mark.parametrize("tail", INVALID + [b"\xf0", b"\xf0\x9f\x98", b"\xe2\x82", b"\xc3", b"'", b" ", b"1"])
def test_asan_build_at_buffer_ends(tail: bytes, port_tokenizer: Path, oracle: BpeVocab, asan: Path) -> None:
    """Each string sits in a buffer of exactly its size, so the sanitizer sees a read past a truncated tail."""
    strings = [tail, b"ab " + tail, "caf\u00e9 ".encode() + tail, tail * 3]
    assert port_encode([str(asan)], port_tokenizer, strings) == [oracle.encode(s) for s in strings]


def test_asan_build_on_the_fuzz_corpus(port_tokenizer: Path, oracle: BpeVocab, asan: Path) -> None:
    strings = Corpus(FUZZ_SEED + 3).strings(2000)
    assert port_encode([str(asan)], port_tokenizer, strings) == [oracle.encode(s) for s in strings]


@pytest.mark.parametrize("target", ["tiny686", "win32"])
def test_32bit_builds_match(target: str, port_tokenizer: Path, oracle: BpeVocab,
                            tmp_path_factory: pytest.TempPathFactory) -> None:
    binary = build_bpetool(target, tmp_path_factory.mktemp(target))
    command: list[str] = [str(binary)]
    if target == "win32":
        command = _wine(binary)
    strings = Corpus(FUZZ_SEED + 4).strings(500)
    assert port_encode(command, port_tokenizer, strings, timeout=600) == [oracle.encode(s) for s in strings]


def _wine(binary: Path) -> list[str]:
    wine = wine_command()
    if wine is None:
        pytest.skip(WINE_MISSING)
    return [*wine, str(binary)]


ENCODERS: dict[str, Callable[[SharedVocab, str], list[int]]] = {
    "tokenizers": lambda v, t: v.hf.encode(t, add_special_tokens=False).ids,
    "tiktoken": lambda v, t: v.tt.encode_ordinary(t),
}


@pytest.mark.parametrize("reference", sorted(ENCODERS))
@pytest.mark.parametrize("text", ["he's", "HE'S", "it\u2019s", "x'\u017fy", "  !!", "a\r\n\r\n b", "12345678",
                                  "\u00bd\u00b2", "\t\tx", "e\u0301\u0301", "\u3000\u3000a", "a\u001c\u001cb",
                                  "   ", "\n \n  ", "\u00a0\u00a0!"])
def test_edge_cases(reference: str, text: str, vocab: SharedVocab, port_tokenizer: Path, bpetool: Path,
                    oracle: BpeVocab) -> None:
    expected = ENCODERS[reference](vocab, text)
    assert port_encode([str(bpetool)], port_tokenizer, [text.encode()])[0] == expected
    assert oracle.encode(text.encode()) == expected


@pytest.mark.parametrize("piece", [" ", "a", "!", "\u00e9", "ab", "\u4e00", "\U0001f600", "1a"])
def test_long_pieces(piece: str, vocab: SharedVocab, port_tokenizer: Path, bpetool: Path,
                     oracle: BpeVocab) -> None:
    """Long runs make one piece each (the merge is a heap in the port, a rescan in the oracle)."""
    texts = [piece * 700, "x" + piece * 333 + "\n", " " + piece * 500 + "!"]
    port = port_encode([str(bpetool)], port_tokenizer, [t.encode() for t in texts])
    assert port == [vocab.tt.encode_ordinary(t) for t in texts]
    assert port == [e.ids for e in vocab.hf.encode_batch(texts, add_special_tokens=False)]
    assert port == [oracle.encode(t.encode()) for t in texts]


def test_a_huge_piece_does_not_hang_the_port(vocab: SharedVocab, port_tokenizer: Path, bpetool: Path) -> None:
    text = " " * 200_000 + "a" * 100_000
    (port,) = port_encode([str(bpetool)], port_tokenizer, [text.encode()], timeout=60)
    assert port == vocab.tt.encode_ordinary(text)


def test_fuzz_with_a_larger_vocabulary(tmp_path_factory: pytest.TempPathFactory, bpetool: Path) -> None:
    """A vocabulary the trainer fills up (about 5000 tokens, some over 50 bytes) on fresh strings."""
    big = build(tmp_path_factory.mktemp("big"), seed=5, vocab_size=8000)
    assert len(big.ranks) > 4000
    tokenizer = write_port_tokenizer(big, tmp_path_factory.mktemp("bigtok") / "tokenizer.bin")
    strings = Corpus(FUZZ_SEED + 5).strings(3000)
    texts = _texts(strings)
    big_oracle = load_bpe(tokenizer)
    results = {
        "port": port_encode([str(bpetool)], tokenizer, strings),
        "oracle": [big_oracle.encode(s) for s in strings],
        "tokenizers": [e.ids for e in big.hf.encode_batch(texts, add_special_tokens=False)],
        "tiktoken": [big.tt.encode_ordinary(t) for t in texts],
    }
    assert _differences(strings, results) == []


def _hf_piece_ends(text: str) -> list[int]:
    """Byte offsets where Hugging Face's Llama 3 Split pre-tokenizer ends each piece."""
    split = pre_tokenizers.Split(Regex(LLAMA3_PATTERN), behavior="isolated", invert=False)
    ends = [end for _piece, (_start, end) in split.pre_tokenize_str(text)]
    return [len(text[:end].encode()) for end in ends]


def test_split_of_every_assigned_code_point_equals_tokenizers(port_tokenizer: Path, bpetool: Path) -> None:
    """Every code point Unicode 16 assigns (private use sampled), in the contexts where its class decides the
    split, cut into pieces by the port exactly as Oniguruma in `tokenizers` cuts them (tiktoken's Rust regex
    classifies every code point as Unicode 16 does too: see harness/port/unicode_tables.py)."""
    data = unicode_tables.unicode_data()
    if data.unidata_version != "16.0.0":
        pytest.skip(f"needs unicodedata2 16.0.0 (the references' Unicode version), have {data.unidata_version}")
    points = [cp for cp in range(1, 0x110000) if not 0xD800 <= cp <= 0xDFFF
              and data.category(chr(cp)) not in ("Cn", "Co")] + list(range(0xE000, 0x110000, 997))
    contexts = ["a{}b", " {}!", "1{}2", "'{}", "{}{}", "\t{}\n", "!{}a", " {} "]
    texts = ["".join(c.format(chr(cp), chr(cp)) for cp in points[i:i + 64] for c in contexts)
             for i in range(0, len(points), 64)]
    encoded = [t.encode("utf-8", errors="surrogatepass") for t in texts]
    port = _port_pieces(bpetool, port_tokenizer, encoded)
    differences = [t for t, p in zip(texts, port) if p != _hf_piece_ends(t)]
    assert differences == [], differences[:2]


def _port_pieces(bpetool: Path, tokenizer: Path, strings: list[bytes]) -> list[list[int]]:
    result = subprocess.run([str(bpetool), str(tokenizer), "-p"], input=b"\0".join(strings), capture_output=True,
                            timeout=300, check=True)
    return [[int(x) for x in line.split()] for line in result.stdout.decode().split("\n")[:-1]]
