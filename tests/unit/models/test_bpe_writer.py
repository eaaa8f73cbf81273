"""The BPE tokenizer file: the writer's output and refusals, and how the port and the oracle refuse bad files."""

from __future__ import annotations

import json
import struct
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from harness.models.bpe_writer import (
    BpeSource,
    BpeWriteError,
    from_tiktoken,
    from_tokenizer_json,
    llama3_control_ids,
    write_bpe,
)
from harness.oracle.bpe import load_bpe
from harness.oracle.errors import TokenizerError
from tests.support.bpe_helpers import build_bpetool, write_port_tokenizer
from tests.support.bpe_vocab import SharedVocab, build, train


@pytest.fixture(scope="module")
def vocab(tmp_path_factory: pytest.TempPathFactory) -> SharedVocab:
    return build(tmp_path_factory.mktemp("vocab"), seed=7, vocab_size=600)


@pytest.fixture(scope="module")
def good(vocab: SharedVocab, tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return write_port_tokenizer(vocab, tmp_path_factory.mktemp("tok") / "t.bin").read_bytes()


@pytest.fixture(scope="module")
def bpetool(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_bpetool("native", tmp_path_factory.mktemp("native"))


def test_tokenizer_json_and_tiktoken_file_give_the_same_bytes(vocab: SharedVocab, good: bytes,
                                                              tmp_path: Path) -> None:
    source = from_tiktoken(vocab.tiktoken_file, list(vocab.specials))
    write_bpe(tmp_path / "tt.bin", source, *llama3_control_ids(source))
    assert (tmp_path / "tt.bin").read_bytes() == good


def test_header_and_control_ids(vocab: SharedVocab, good: bytes, bpetool: Path, tmp_path: Path) -> None:
    path = tmp_path / "t.bin"
    path.write_bytes(good)
    loaded = load_bpe(path)
    bos, eos, eot, eom = (vocab.specials[s] for s in
                          ("<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>", "<|eom_id|>"))
    assert (loaded.bos_id, loaded.eos_id, loaded.stop_ids) == (bos, eos, [eot, eom])
    assert loaded.is_stop(eot) and loaded.is_stop(eos) and not loaded.is_stop(bos) and not loaded.is_stop(1)
    assert len(loaded.tokens) == len(vocab.ranks) + len(vocab.specials)
    info = subprocess.run([str(bpetool), str(path), "-i"], capture_output=True, text=True, timeout=30,
                          check=True).stdout
    assert f"bos {bos}\neos {eos}\nstop {eot} {eom}\nspecials {len(vocab.specials)}\n" in info


def test_default_llama3_specials_from_a_rank_file(vocab: SharedVocab) -> None:
    source = from_tiktoken(vocab.tiktoken_file)
    base = len(vocab.ranks)
    assert len(source.tokens) == base + 256
    assert llama3_control_ids(source) == (base, base + 1, [base + 9, base + 8])
    assert source.tokens[-1] == f"<|reserved_special_token_{256 - 11 + 1}|>".encode()


def _bad_files(good: bytes) -> dict[str, bytes]:
    header = struct.unpack_from("<8i", good, 4)
    n_stop = header[7]
    first = 36 + 4 * n_stop

    def with_header(index: int, value: int) -> bytes:
        fields = list(header)
        fields[index] = value
        return good[:4] + struct.pack("<8i", *fields) + good[36:]

    rank, length = struct.unpack_from("<2i", good, first)
    return {
        "empty": b"",
        "magic": b"XXXX" + good[4:],
        "version": with_header(0, 2),
        "tokens": with_header(1, 10),
        "max_bytes": with_header(2, 0),
        "pretokenizer": with_header(3, 7),
        "flags": with_header(4, 6),
        "bos": with_header(5, 1 << 20),
        "stops": with_header(7, -3),
        "truncated": good[:-1],
        "trailing": good + b"\0",
        "rank": good[:first] + struct.pack("<2i", -5, length) + good[first + 8:],
        "length": good[:first] + struct.pack("<2i", rank, 0) + good[first + 8:],
        # token 0 given the bytes of token 1: a duplicate, and byte 0x21 has no token left
        "duplicate": good[:first + 8] + good[first + 8 + 9:first + 8 + 10] + good[first + 9:],
    }


@pytest.mark.parametrize("name", ["empty", "magic", "version", "tokens", "max_bytes", "pretokenizer", "flags",
                                  "bos", "stops", "truncated", "trailing", "rank", "length", "duplicate"])
def test_bad_files_are_refused_in_one_line(name: str, good: bytes, bpetool: Path, tmp_path: Path) -> None:
    path = tmp_path / "bad.bin"
    path.write_bytes(_bad_files(good)[name])
    result = subprocess.run([str(bpetool), str(path)], input=b"hi", capture_output=True, timeout=30, check=False)
    assert result.returncode == 1
    assert result.stdout == b""
    lines = result.stderr.decode().splitlines()
    assert len(lines) == 1 and lines[0].startswith("llama98: error: "), lines
    with pytest.raises(TokenizerError) as error:
        load_bpe(path)
    assert "\n" not in str(error.value)


def test_missing_file(bpetool: Path, tmp_path: Path) -> None:
    result = subprocess.run([str(bpetool), str(tmp_path / "nope.bin")], capture_output=True, timeout=30,
                            check=False)
    assert result.returncode == 1 and b"cannot open" in result.stderr
    with pytest.raises(TokenizerError, match="not found"):
        load_bpe(tmp_path / "nope.bin")


def _edit_json(vocab: SharedVocab, tmp_path: Path, edit: Callable[[dict], None]) -> Path:
    data = json.loads(vocab.tokenizer_json.read_text(encoding="utf-8"))
    edit(data)
    path = tmp_path / "tokenizer.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def _set(path: list[str], value: object) -> Callable[[dict], None]:
    def edit(data: dict) -> None:
        for key in path[:-1]:
            data = data[key]
        data[path[-1]] = value
    return edit


REFUSALS: dict[str, tuple[Callable[[dict], None], str]] = {
    "model": (_set(["model", "type"], "WordPiece"), "only BPE"),
    "normalizer": (_set(["normalizer"], {"type": "NFC"}), "normalizer"),
    "regex": (lambda d: d["pre_tokenizer"]["pretokenizers"][0]["pattern"].update(Regex=r"\w+"), "Llama 3 regex"),
    "pre_tokenizer": (_set(["pre_tokenizer"], {"type": "Whitespace"}), "pre-tokenizer"),
    "byte_fallback": (_set(["model", "byte_fallback"], True), "ignore_merges"),
    "added": (lambda d: d["added_tokens"][0].update(special=False), "not special"),
    "merge": (lambda d: d["model"]["merges"].append(["zz", "qq"]), "not in the vocabulary"),
    "incomplete": (lambda d: d["model"]["merges"].pop(len(d["model"]["merges"]) // 2), "rank-complete"),
}


@pytest.mark.parametrize("name", sorted(REFUSALS))
def test_writer_refuses_in_one_line(name: str, vocab: SharedVocab, tmp_path: Path) -> None:
    edit, words = REFUSALS[name]
    path = _edit_json(vocab, tmp_path, edit)
    with pytest.raises(BpeWriteError, match=words) as error:
        from_tokenizer_json(path)
    assert "\n" not in str(error.value)


def test_writer_refuses_a_freshly_trained_tokenizer_json(tmp_path: Path) -> None:
    """A trainer lists one merge per token, so tiktoken's rule could encode differently: refused."""
    _vocab, text = train(3, 600)
    path = tmp_path / "tokenizer.json"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(BpeWriteError, match="rank-complete"):
        from_tokenizer_json(path)


@pytest.mark.parametrize("content", [b"not base64! 3\n", b"YQ== x\n", b"YQ== 1\nYg== 1\n", b"YQ== 1 2\n"])
def test_tiktoken_reader_refuses_bad_lines(content: bytes, tmp_path: Path) -> None:
    path = tmp_path / "tokenizer.model"
    path.write_bytes(content)
    with pytest.raises(BpeWriteError, match="tiktoken"):
        from_tiktoken(path)


def test_writer_refuses_a_vocabulary_without_every_byte(tmp_path: Path) -> None:
    tokens: list[bytes | None] = [bytes([b]) for b in range(255)]
    tokens.append(b"ab")
    source = BpeSource(tokens, list(range(256)), True)
    with pytest.raises(BpeWriteError, match="0xFF"):
        write_bpe(tmp_path / "x.bin", source, -1, -1, [])


def test_non_json_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "tokenizer.json"
    path.write_bytes(b"\xff{")
    with pytest.raises(BpeWriteError, match="not a JSON"):
        from_tokenizer_json(path)


@pytest.mark.parametrize("edit", [
    lambda d: d["added_tokens"].append({"content": "<|x|>"}),
    lambda d: d["model"]["vocab"].update({"zzz": "7"}),
    lambda d: d["model"]["vocab"].update({"zzz": 3}),
])
def test_malformed_tokenizer_json_is_refused(edit: Callable[[dict], None], vocab: SharedVocab,
                                             tmp_path: Path) -> None:
    with pytest.raises(BpeWriteError):
        from_tokenizer_json(_edit_json(vocab, tmp_path, edit))
