"""A Llama 3-sized vocabulary (128000 ranked tokens + 256 specials = 128256 ids, the ids Llama 3 uses for
<|begin_of_text|>, <|end_of_text|> and <|eot_id|>) from a tiktoken rank file: port, oracle and tiktoken agree."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
import tiktoken

from harness.models.bpe_writer import (
    LLAMA3_PATTERN,
    from_tiktoken,
    llama3_control_ids,
    write_bpe,
)
from harness.oracle.bpe import load_bpe
from tests.support.bpe_corpus import Corpus
from tests.support.bpe_helpers import build_bpetool, port_encode
from tests.support.bpe_vocab import LLAMA3_BASE, llama3_sized_ranks


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, tiktoken.Encoding]:
    directory = tmp_path_factory.mktemp("llama3size")
    ranks = llama3_sized_ranks()
    rank_file = directory / "tokenizer.model"
    rank_file.write_bytes(b"".join(base64.b64encode(t) + b" %d\n" % r for t, r in ranks.items()))
    source = from_tiktoken(rank_file)
    write_bpe(directory / "tokenizer.bin", source, *llama3_control_ids(source))
    specials = {t.decode(): i for i, t in enumerate(source.tokens) if i >= LLAMA3_BASE and t is not None}
    encoding = tiktoken.Encoding("llama3-size", pat_str=LLAMA3_PATTERN, mergeable_ranks=ranks,
                                 special_tokens=specials)
    return directory / "tokenizer.bin", encoding


def test_ids_and_control_tokens(files: tuple[Path, tiktoken.Encoding]) -> None:
    tokenizer, encoding = files
    loaded = load_bpe(tokenizer)
    assert len(loaded.tokens) == 128256 == encoding.n_vocab
    assert (loaded.bos_id, loaded.eos_id) == (128000, 128001)
    assert loaded.stop_ids == [128009, 128008]
    assert loaded.tokens[128009] == b"<|eot_id|>"


def test_port_oracle_and_tiktoken_agree(files: tuple[Path, tiktoken.Encoding],
                                        tmp_path_factory: pytest.TempPathFactory) -> None:
    tokenizer, encoding = files
    bpetool = build_bpetool("native", tmp_path_factory.mktemp("native"))
    strings = Corpus(128256).strings(1500) + [b"<|begin_of_text|>Hello there<|eot_id|>"]
    texts = [s.decode("utf-8", errors="replace") for s in strings]
    expected = [encoding.encode(t, allowed_special="all") for t in texts]
    assert port_encode([str(bpetool)], tokenizer, strings, specials=True) == expected
    oracle = load_bpe(tokenizer)
    assert [oracle.encode(s, allow_special=True) for s in strings] == expected
    assert expected[-1][0] == 128000 and expected[-1][-1] == 128009
