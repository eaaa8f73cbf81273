"""Pick the model and tokenizer a run uses, from a name or a path, and say in one line where they came from.

The main job must never fail for want of a download: a named real model is taken from the fixture dir or the
cache, downloaded if possible, and otherwise replaced by a generated model of the same shape (seeded random
weights, same cost per token), which the oracle verifies just as well. The label says which one was used.
"""

from __future__ import annotations

import stat
from dataclasses import dataclass
from pathlib import Path

from harness.core.errors import HarnessError
from harness.models.downloads import FixtureError, resolve
from harness.models.modelgen import SHAPES, cached_checkpoint, cached_tokenizer
from harness.oracle.bpe import load_bpe
from harness.oracle.checkpoint import load_checkpoint
from harness.oracle.llama3 import is_bpe_tokenizer

# name -> (checkpoint fixture, tokenizer fixture, shape of the generated stand-in)
REAL_MODELS: dict[str, tuple[str, str, str]] = {
    "stories260K": ("stories260K.bin", "tok512.bin", "260K-shape"),
    "stories15M": ("stories15M.bin", "tokenizer.bin", "15M-shape"),
}
DEFAULT_MODEL = "stories260K"
QUANT_SUFFIXES = ("q8_0", "ternary")  # harness/models/quantize.py QUANT_TYPES


class ModelChoiceError(HarnessError):
    """The requested model or tokenizer cannot be found or made."""


@dataclass(frozen=True)
class ModelChoice:
    """The files a run injects, and a one-line description of where they came from."""

    checkpoint: Path
    tokenizer: Path
    label: str


def _require_readable(path: Path, what: str) -> None:
    """A one-line ModelChoiceError unless `path` is a regular file this user can open for reading.

    Checked once here, before anything parses the file, because the readers below meet an unreadable file as a
    bare OSError (a directory passed as --tokenizer, a file of another user's private checkout); a FIFO or a
    device is refused before it is opened, so nothing can block on it."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise ModelChoiceError(f"{what} not found: {path}") from None
    except NotADirectoryError:
        raise ModelChoiceError(f"{what} not found: {path} (a directory on its path is a file)") from None
    except OSError as error:
        raise ModelChoiceError(f"{what} {path} is not readable: {error.strerror or error}") from None
    if stat.S_ISDIR(mode):
        raise ModelChoiceError(f"{what} {path} is a directory, not a file")
    if not stat.S_ISREG(mode):
        raise ModelChoiceError(f"{what} {path} is not a regular file")
    try:
        with path.open("rb"):
            pass
    except OSError as error:
        raise ModelChoiceError(f"{what} {path} is not readable: {error.strerror or error}") from None


def _names_something(path: Path) -> bool:
    """Whether anything is at `path` (a file, a directory, a dangling link, something this user cannot see into):
    then the argument was meant as a path, and _require_readable says what is wrong with it."""
    try:
        path.lstat()
    except (FileNotFoundError, NotADirectoryError):
        return False
    except OSError:
        return True
    return True


def _tokenizer_for_vocab(vocab_size: int, allow_download: bool) -> Path:
    """The real tokenizer of a known vocabulary size (512 or 32000) for a model file given without --tokenizer."""
    known = {512: "tok512.bin", 32000: "tokenizer.bin"}
    if vocab_size not in known:
        raise ModelChoiceError(f"no known tokenizer has {vocab_size} tokens; pass --tokenizer PATH")
    try:
        return resolve(known[vocab_size], allow_download=allow_download)
    except FixtureError as error:
        raise ModelChoiceError(f"{error}; pass --tokenizer PATH") from None


def _vocab_of(checkpoint: Path) -> int:
    try:
        return load_checkpoint(checkpoint).config.vocab_size
    except HarnessError as error:
        raise ModelChoiceError(str(error)) from None

def tokenizer_entries(path: Path) -> int:
    """How many tokens a llama2.c tokenizer file holds (it has no count field: walk it to its end)."""
    data = path.read_bytes()
    offset, count = 4, 0
    while offset + 8 <= len(data):
        length = int.from_bytes(data[offset + 4: offset + 8], "little", signed=True)
        if length < 0 or offset + 8 + length > len(data):
            break
        offset += 8 + length
        count += 1
    if offset != len(data):
        raise ModelChoiceError(f"tokenizer {path} is truncated or damaged after {count} tokens")
    return count


def check_pair(choice: ModelChoice) -> ModelChoice:
    """Refuse, before any guest boots, a damaged checkpoint or a tokenizer that belongs to another model.

    llama2.c (and so the port) reads only the first vocab_size tokens of a larger tokenizer and prints garbage
    without complaint; the harness knows better and says so in one line. A BPE tokenizer file (L98B, the Llama 3
    family) names its ids itself: it may have fewer ids than the model's vocabulary (padded embeddings) but not
    more, as the exporter, the port and the oracle agree.
    """
    try:
        checkpoint = load_checkpoint(choice.checkpoint)
    except HarnessError as error:
        raise ModelChoiceError(str(error)) from None
    if checkpoint.version not in (0, 2, 3, 98):
        raise ModelChoiceError(f"{choice.checkpoint} is a llama2.c v{checkpoint.version} export; llama98 reads legacy "
                               f"v0, v2 (Q8_0), version 3 (L98M) and version 98 (ternary) checkpoints (export with "
                               f"llama2.c's --version 0 or 2, or `llama98-harness export` for Hugging Face models)")
    config = checkpoint.config
    if is_bpe_tokenizer(choice.tokenizer):
        try:
            ids = len(load_bpe(choice.tokenizer).tokens)
        except HarnessError as error:
            raise ModelChoiceError(str(error)) from None
        if ids > config.vocab_size:
            raise ModelChoiceError(
                f"wrong tokenizer: {choice.tokenizer} has {ids} token ids but {choice.checkpoint.name} has a "
                f"vocabulary of {config.vocab_size}; pass the model's own tokenizer with --tokenizer")
        return choice
    entries = tokenizer_entries(choice.tokenizer)
    if entries != config.vocab_size:
        raise ModelChoiceError(
            f"wrong tokenizer: {choice.tokenizer} holds {entries} tokens but {choice.checkpoint.name} has a "
            f"vocabulary of {config.vocab_size}; pass the model's own tokenizer with --tokenizer")
    return choice


def split_quant(name: str) -> tuple[str, str | None]:
    """`15M-shape:q8_0` -> ("15M-shape", "q8_0"); a name without a known suffix is returned whole."""
    base, sep, suffix = name.rpartition(":")
    if sep and suffix in QUANT_SUFFIXES and base:
        return base, suffix
    return name, None


def choose_model(model: str | None = None, tokenizer: str | None = None,
                 allow_download: bool = True) -> ModelChoice:
    """Resolve `--model NAME|PATH[:q8_0|:ternary]` and `--tokenizer PATH` into checked files (see the module
    docstring); a quantization suffix quantizes the named float32 model once (harness/models/quantize.py)."""
    name, quant = split_quant(model or DEFAULT_MODEL)
    choice = _resolve_model(name, tokenizer, allow_download)
    _require_readable(choice.checkpoint, "model")
    _require_readable(choice.tokenizer, "tokenizer")
    if quant:
        from harness.models.quantize import cached_quantized

        try:
            quantized = cached_quantized(choice.checkpoint, quant)
        except HarnessError as error:
            raise ModelChoiceError(str(error)) from None
        choice = ModelChoice(quantized, choice.tokenizer, f"{choice.label}, quantized to {quant}")
    return check_pair(choice)


def _resolve_model(model: str | None, tokenizer: str | None, allow_download: bool) -> ModelChoice:
    name = model or DEFAULT_MODEL
    if name in REAL_MODELS:
        checkpoint_name, tokenizer_name, shape_name = REAL_MODELS[name]
        try:
            checkpoint = resolve(checkpoint_name, allow_download=allow_download)
            token_file = Path(tokenizer) if tokenizer else resolve(tokenizer_name, allow_download=allow_download)
            return ModelChoice(checkpoint, token_file, f"{name} ({checkpoint})")
        except FixtureError as error:
            reason = str(error)
        stand_in = cached_checkpoint(shape_name)
        shape = SHAPES[shape_name]
        token_file = Path(tokenizer) if tokenizer else cached_tokenizer(shape.vocab_size)
        return ModelChoice(stand_in, token_file,
                           f"generated stand-in with the shape of {name} (seeded random weights; the real model "
                           f"is not available: {reason})")
    if name in SHAPES:
        shape = SHAPES[name]
        if tokenizer:
            token_file = Path(tokenizer)
        elif shape.vocab_size == 32000:
            try:
                token_file = _tokenizer_for_vocab(shape.vocab_size, allow_download)
            except ModelChoiceError:  # a generated model needs no real tokenizer: never fail for want of one
                token_file = cached_tokenizer(shape.vocab_size)
        else:
            token_file = cached_tokenizer(shape.vocab_size)
        return ModelChoice(cached_checkpoint(name), token_file, f"generated model of shape {name}")
    path = Path(name)
    if not _names_something(path):
        known = ", ".join([*REAL_MODELS, *SHAPES])
        raise ModelChoiceError(f"model {name!r} is neither a file nor a known name ({known})")
    _require_readable(path, "model")
    if tokenizer:
        _require_readable(Path(tokenizer), "tokenizer")
    token_file = Path(tokenizer) if tokenizer else _tokenizer_for_vocab(_vocab_of(path), allow_download)
    return ModelChoice(path, token_file, f"{path.name} ({path})")
