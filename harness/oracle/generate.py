"""Generate text exactly as llama2.c `run -m generate` does, so a port's stdout can be diffed against it.

The generate loop (`run_generation`) is the one every oracle uses: forced prompt tokens, then sampled ones with
llama2.c's sampler and RNG, one forward step per position. What differs between model families is a small
TokenRules object: how a prompt becomes ids, which id ends a run, and which bytes a token prints. llama2.c's
rules are here (Llama2Rules: BOS then the SentencePiece-style encoding, a run ends at BOS id 1 even inside the
prompt, a piece after BOS loses its leading space); Llama 3's are in harness/oracle/llama3.py.

Also home of llama2.c's argument semantics: atof/atoi parsing of flag values and the clamping run.c applies
(negative temperature -> 0, topp outside [0, 1] -> 0.9, seed 0 -> time, steps 0 or > seq_len -> seq_len).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from harness.oracle.checkpoint import Checkpoint, load_checkpoint
from harness.oracle.errors import OracleError
from harness.oracle.model import Transformer
from harness.oracle.sampler import Sampler
from harness.oracle.tokenizer import BOS_ID, Tokenizer, load_tokenizer

_ATOF = re.compile(
    r"\s*([+-]?(?:(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|inf(?:inity)?|nan))", re.IGNORECASE
)
_ATOI = re.compile(r"\s*([+-]?\d+)")
_LONG_MIN, _LONG_MAX = -(1 << 63), (1 << 63) - 1


def c_atof(text: str) -> float:
    """C atof: the longest leading decimal number (0.0 if there is none); the rest is ignored."""
    match = _ATOF.match(text)
    if not match:
        return 0.0
    return float(match.group(1))


def c_atoi(text: str) -> int:
    """glibc atoi: (int) strtol, i.e. leading digits, saturated to long, then truncated to 32 bits."""
    match = _ATOI.match(text)
    if not match:
        return 0
    value = min(max(int(match.group(1)), _LONG_MIN), _LONG_MAX) & 0xFFFFFFFF
    return value - (1 << 32) if value >= 1 << 31 else value


@dataclass(frozen=True)
class RunArgs:
    """The values in force after llama2.c's clamping, as the port reports them in its `args` record."""

    temperature: np.float32
    topp: np.float32
    seed: int  # unsigned 64-bit
    steps: int
    prompt: bytes | None


def clamp_args(
    seq_len: int,
    temperature: float = 1.0,
    topp: float = 0.9,
    seed: int = 0,
    steps: int = 256,
    prompt: bytes | None = None,
) -> RunArgs:
    """Apply run.c's defaults and clamps. `seed` is the int atoi produced (it is widened to unsigned 64)."""
    seed_u64 = seed & ((1 << 64) - 1)
    if seed_u64 == 0:
        seed_u64 = int(time.time()) & 0xFFFFFFFF
    t = np.float32(temperature)
    if t < 0:
        t = np.float32(0.0)
    p = np.float32(topp)
    if p < 0 or p > 1:
        p = np.float32(0.9)
    if steps < 0:
        steps = 0
    if steps == 0 or steps > seq_len:
        steps = seq_len
    return RunArgs(t, p, seed_u64, steps, prompt)


@dataclass
class Generation:
    """What a generate run produced: the bytes printed and the ids behind them."""

    args: RunArgs
    prompt_ids: list[int]
    token_ids: list[int] = field(default_factory=list)  # one per forward step (the id chosen for pos + 1)
    text: bytes = b""  # stdout, including the final "\n"


class TokenRules(Protocol):
    """What a model family decides in the generate loop; everything else (steps, sampling, cache) is the loop's."""

    def encode_prompt(self, prompt: bytes | None) -> list[int]:
        """The ids the run starts from: at least one (the first is fed at position 0), the rest are forced."""
        ...

    def is_stop(self, token: int, sampled: bool) -> bool:
        """True when `token`, chosen for the next position, ends the run unprinted (`sampled`: it was sampled,
        not a forced prompt id)."""
        ...

    def decode(self, prev: int, token: int) -> bytes:
        """The bytes printed for `token`, which follows `prev`."""
        ...


def run_generation(transformer: Transformer, rules: TokenRules, args: RunArgs) -> Generation:
    """The generate loop of run.c: forced prompt tokens, then sampled ones, up to `args.steps` positions (already
    clamped; the KV cache holds exactly that many) or a stop id; the text ends with run.c's final newline."""
    prompt_ids = rules.encode_prompt(args.prompt)
    result = Generation(args, prompt_ids)
    sampler = Sampler.create(float(args.temperature), float(args.topp), args.seed)
    cache = transformer.new_cache(args.steps)
    out = bytearray()
    token = prompt_ids[0]
    for pos in range(args.steps):
        logits = transformer.step(token, pos, cache)
        sampled = pos >= len(prompt_ids) - 1
        next_token = sampler.sample(logits) if sampled else prompt_ids[pos + 1]
        result.token_ids.append(next_token)
        if rules.is_stop(next_token, sampled):
            break
        out += rules.decode(token, next_token)
        token = next_token
    result.text = bytes(out) + b"\n"
    return result


@dataclass(frozen=True)
class Llama2Rules:
    """llama2.c's token rules on a llama2.c tokenizer file."""

    tokenizer: Tokenizer

    def encode_prompt(self, prompt: bytes | None) -> list[int]:
        ids = self.tokenizer.encode(prompt or b"", bos=True, eos=False)
        if not ids:
            raise OracleError("expected at least 1 prompt token")
        return ids

    def is_stop(self, token: int, sampled: bool) -> bool:
        """run.c checks every next id, forced or sampled: BOS (id 1) ends the run."""
        return token == BOS_ID

    def decode(self, prev: int, token: int) -> bytes:
        return self.tokenizer.decode(prev, token)


@dataclass
class Oracle:
    """A loaded model and llama2.c tokenizer, ready to generate or verify."""

    checkpoint: Checkpoint
    tokenizer: Tokenizer
    transformer: Transformer

    @classmethod
    def load(cls, checkpoint_path: str | Path, tokenizer_path: str | Path) -> Oracle:
        checkpoint = load_checkpoint(checkpoint_path)
        tokenizer = load_tokenizer(tokenizer_path, checkpoint.config.vocab_size)
        return cls(checkpoint, tokenizer, Transformer(checkpoint))

    @property
    def rules(self) -> Llama2Rules:
        return Llama2Rules(self.tokenizer)

    def encode_prompt(self, prompt: bytes | None) -> list[int]:
        return self.rules.encode_prompt(prompt)

    def generate(self, args: RunArgs) -> Generation:
        """run.c's generate loop with llama2.c's rules."""
        return run_generation(self.transformer, self.rules, args)


def generate(
    checkpoint: str | Path,
    tokenizer: str | Path,
    temperature: float = 1.0,
    topp: float = 0.9,
    seed: int = 0,
    steps: int = 256,
    prompt: bytes | str | None = None,
) -> Generation:
    """Run the oracle like `run CHECKPOINT -z TOKENIZER -t -p -s -n -i`; values are clamped as run.c does."""
    oracle = Oracle.load(checkpoint, tokenizer)
    if isinstance(prompt, str):
        prompt = prompt.encode("utf-8")
    args = clamp_args(oracle.checkpoint.config.seq_len, temperature, topp, seed, steps, prompt)
    return oracle.generate(args)


def generate_text(
    checkpoint: str | Path,
    tokenizer: str | Path,
    temperature: float = 1.0,
    topp: float = 0.9,
    seed: int = 0,
    steps: int = 256,
    prompt: bytes | str | None = None,
) -> bytes:
    """Exactly the bytes llama2.c `run` prints on stdout for these arguments."""
    return generate(checkpoint, tokenizer, temperature, topp, seed, steps, prompt).text
