"""Generate with a Llama 3 model on the oracle: a version-3 checkpoint with a BPE tokenizer file.

The loop is llama2.c's (run_generation in harness/oracle/generate.py: forced prompt tokens, then sampled ones,
the same sampler and RNG), with Llama 3's token rules (Llama3Rules): the prompt is the tokenizer's BOS then the
BPE encoding of the prompt, a sampled id that is the tokenizer's EOS or a stop id (<|end_of_text|>, <|eot_id|>)
ends the run (a forced prompt id never does), and a token prints as its bytes whatever precedes it. The KV cache
holds only the positions the run uses: steps, capped by `context` (the port's -c) and by the model's seq_len
(131072 in Llama 3.1/3.2 configs, far beyond what a run needs).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from harness.oracle.bpe import MAGIC as BPE_MAGIC
from harness.oracle.bpe import BpeVocab, load_bpe
from harness.oracle.checkpoint import Checkpoint, load_checkpoint
from harness.oracle.errors import OracleError, TokenizerError
from harness.oracle.generate import Generation, RunArgs, run_generation
from harness.oracle.model import Transformer


def is_bpe_tokenizer(path: str | Path) -> bool:
    """True when the file starts with the BPE tokenizer magic (a llama2.c tokenizer file cannot: its first
    field is max_token_length, a small int32)."""
    try:
        with Path(path).open("rb") as handle:
            return handle.read(4) == BPE_MAGIC
    except OSError:
        return False


def run_positions(seq_len: int, steps: int, context: int | None = None) -> int:
    """The steps a run takes: llama2.c's rule (steps <= 0 or > the limit -> the limit) where the limit is
    seq_len, or the -c context when it is smaller."""
    limit = seq_len if context is None or context <= 0 else min(context, seq_len)
    return limit if steps <= 0 or steps > limit else steps


@dataclass(frozen=True)
class Llama3Rules:
    """Llama 3's token rules on a BPE tokenizer file."""

    tokenizer: BpeVocab

    def encode_prompt(self, prompt: bytes | None) -> list[int]:
        """BOS (when the tokenizer has one), then the prompt's ids."""
        ids = ([self.tokenizer.bos_id] if self.tokenizer.bos_id >= 0 else []) + self.tokenizer.encode(prompt or b"")
        if not ids:
            raise OracleError("expected at least 1 prompt token (the tokenizer has no BOS and the prompt is empty)")
        return ids

    def is_stop(self, token: int, sampled: bool) -> bool:
        """Only a sampled EOS or stop id ends the run; the same id forced by the prompt is fed on."""
        return sampled and self.tokenizer.is_stop(token)

    def decode(self, prev: int, token: int) -> bytes:
        return self.tokenizer.decode([token])


@dataclass
class Llama3Oracle:
    """A v3 checkpoint, its BPE tokenizer and the forward pass."""

    checkpoint: Checkpoint
    tokenizer: BpeVocab
    transformer: Transformer

    @classmethod
    def load(cls, checkpoint_path: str | Path, tokenizer_path: str | Path) -> Llama3Oracle:
        checkpoint = load_checkpoint(checkpoint_path)
        tokenizer = load_bpe(Path(tokenizer_path))
        if len(tokenizer.tokens) > checkpoint.config.vocab_size:
            raise TokenizerError(f"{tokenizer_path}: {len(tokenizer.tokens)} token ids, the model has only "
                                 f"{checkpoint.config.vocab_size}")
        return cls(checkpoint, tokenizer, Transformer(checkpoint))

    @property
    def rules(self) -> Llama3Rules:
        return Llama3Rules(self.tokenizer)

    def encode_prompt(self, prompt: bytes | None) -> list[int]:
        """BOS (when the tokenizer has one), then the prompt's ids."""
        return self.rules.encode_prompt(prompt)

    def generate(self, args: RunArgs) -> Generation:
        """`args.steps` is already clamped (run_positions); the cache holds exactly that many positions."""
        return run_generation(self.transformer, self.rules, args)
