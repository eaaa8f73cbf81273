"""Build a Llama-3-style byte-level BPE vocabulary for the tests, since no real Llama 3 tokenizer may be fetched.

A vocabulary is trained with Hugging Face `tokenizers` (ByteLevel BPE behind the Llama 3 split regex) on a
corpus made from a seed. Its ids become tiktoken ranks (the trainer numbers merged tokens in merge order), and
its tokenizer.json is then rewritten the way Llama 3's was converted from tiktoken: every split of a token into
two tokens is a merge, grouped by the rank of the result, with ignore_merges on, and special tokens added after
the ranked ids. The result is a tokenizer.json, a tiktoken Encoding and a tiktoken rank file describing one
vocabulary, so every implementation can be compared on it.
"""

from __future__ import annotations

import base64
import itertools
import json
import string
from dataclasses import dataclass
from pathlib import Path

import tiktoken
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

from harness.models.bpe_writer import LLAMA3_PATTERN, byte_symbols
from tests.support.bpe_corpus import Corpus

LLAMA3_BASE = 128000  # ranked tokens in Llama 3; 256 special ids follow
SPECIALS = ["<|begin_of_text|>", "<|end_of_text|>", "<|reserved_special_token_0|>",
            "<|reserved_special_token_1|>", "<|finetune_right_pad_id|>", "<|step_id|>", "<|start_header_id|>",
            "<|end_header_id|>", "<|eom_id|>", "<|eot_id|>", "<|python_tag|>", "<|reserved_special_token_2|>"]


@dataclass
class SharedVocab:
    """One vocabulary in every form the tests compare."""

    tokenizer_json: Path
    tiktoken_file: Path
    hf: Tokenizer
    tt: tiktoken.Encoding
    ranks: dict[bytes, int]
    specials: dict[str, int]


def train(seed: int, vocab_size: int) -> tuple[dict[str, int], str]:
    """Trains a ByteLevel BPE behind the Llama 3 regex; returns its vocab and tokenizer.json text."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(LLAMA3_PATTERN), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False, min_frequency=2)
    corpus = Corpus(seed)
    texts = [s.decode("utf-8", errors="replace") for s in corpus.strings(4000)]
    tok.train_from_iterator(texts, trainer=trainer)
    return tok.get_vocab(), tok.to_str()


def complete_merges(vocab: dict[str, int]) -> list[list[str]]:
    """Every split of every token into two tokens, ordered by the result's rank, then the parts' ranks."""
    merges: list[list[str]] = []
    for token, _rank in sorted(vocab.items(), key=lambda item: item[1]):
        local = [(vocab[token[:i]], vocab[token[i:]], token[:i], token[i:]) for i in range(1, len(token))
                 if token[:i] in vocab and token[i:] in vocab]
        merges += [[left, right] for _, _, left, right in sorted(local)]
    return merges


def build(directory: Path, seed: int = 13, vocab_size: int = 1500) -> SharedVocab:
    """Trains and writes the vocabulary under `directory` (tokenizer.json, tokenizer.model)."""
    vocab, text = train(seed, vocab_size)
    data = json.loads(text)
    data["model"]["merges"] = complete_merges(vocab)
    data["model"]["ignore_merges"] = True
    base = len(vocab)
    specials = {s: base + i for i, s in enumerate(SPECIALS)}
    data["added_tokens"] = [{"id": i, "content": s, "single_word": False, "lstrip": False, "rstrip": False,
                             "normalized": False, "special": True} for s, i in specials.items()]
    directory.mkdir(parents=True, exist_ok=True)
    json_path = directory / "tokenizer.json"
    json_path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    symbols = byte_symbols()
    ranks = {bytes(symbols[c] for c in token): rank for token, rank in vocab.items()}
    tt_path = directory / "tokenizer.model"
    tt_path.write_bytes(b"".join(base64.b64encode(t) + b" " + str(r).encode() + b"\n"
                                 for t, r in sorted(ranks.items(), key=lambda item: item[1])))
    encoding = tiktoken.Encoding(name=f"test-{seed}", pat_str=LLAMA3_PATTERN, mergeable_ranks=ranks,
                                 special_tokens=specials)
    return SharedVocab(json_path, tt_path, Tokenizer.from_file(str(json_path)), encoding, ranks, specials)


def llama3_sized_ranks() -> dict[bytes, int]:
    """The 256 bytes, then letter pairs, triples (and space-led ones) until 128000 ranks."""
    letters = string.ascii_letters
    tokens = [bytes([b]) for b in range(256)]
    tokens += [(a + b).encode() for a, b in itertools.product(letters, repeat=2)]
    tokens += [(" " + a).encode() for a in letters]
    for a, b, c in itertools.product(letters, repeat=3):
        if len(tokens) == LLAMA3_BASE:
            break
        tokens.append((a + b + c).encode())
    return {t: i for i, t in enumerate(tokens)}
