"""A deterministic fuzz corpus for the byte-level BPE tokenizers: byte strings built from a seed.

Every category the Llama 3 split regex cares about is drawn on: ASCII prose, contractions in any case (and the
long s that folds to s), digit runs, CJK and kana, emoji with joiners and modifiers, combining marks, tabs, CR,
LF and CRLF, runs of spaces before punctuation, Unicode spaces and the separators next to them, other number
kinds, invalid UTF-8 (lone continuation bytes, truncated sequences, surrogates, overlongs, bytes F5..FF), and
random code points. Random code points are drawn only where Python's unicodedata, the regex engines of
tiktoken/tokenizers and the `regex` module cannot disagree: characters assigned already in Unicode 3.2 whose
class (letter, number, space, other) is the same in 3.2 and in the running Python. NUL is never produced (the
port's test driver separates strings with it).
"""

from __future__ import annotations

import random
import unicodedata

WORDS = ["the", "cat", "sat", "on", "a", "mat", "and", "then", "it", "ran", "far", "away", "because", "nobody",
         "could", "stop", "in", "time", "Once", "upon", "Lily", "Tom", "HELLO", "World", "ünïcödé",
         "naïve", "café", "façade", "résumé", "Ελληνικά",
         "русский", "текст"]
CONTRACTIONS = ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "'T", "'RE", "'Re", "'rE", "'VE", "'M",
                "'LL", "'Ll", "'D", "'\u017f", "\u2019s", "'x", "''", "'", "'r", "'l"]
PUNCT = list(".,;:!?-()[]{}\"'/\\@#$%^&*_+=<>|~`") + ["...", "!!", "?!", "--", "\u2014", "\u00ab", "\u00bb"]
SPACES = [" ", "  ", "   ", "\t", "\n", "\r", "\r\n", "\n\n", " \n", "\t\t", " \r\n ", "\u00a0", "\u2003",
          "\u3000", "\u0085", "\u2028", "\u2029", "\u000b", "\u000c", "\u001c", "\u001f", "\u180e", "\u200b",
          "\u202f", "\u205f"]
NUMBERS_OTHER = ["\u00b2", "\u00bd", "\u2167", "\u0663\u0664", "\u0967", "\uff11\uff12", "\u2460", "\u3007"]
COMBINING = ["\u0301", "\u0308", "\u0323", "\u20dd", "\u0345", "\u05b7", "\u093f"]
EMOJI = ["\U0001f600", "\U0001f44d\U0001f3fd", "\U0001f468\u200d\U0001f469\u200d\U0001f467", "\u2764\ufe0f",
         "\U0001f1ef\U0001f1f5", "\U0001f389", "\u263a", "\U0001f9d1\u200d\U0001f4bb"]
INVALID = [b"\x80", b"\xbf", b"\xc0\xaf", b"\xc1\x81", b"\xc3", b"\xe2\x82", b"\xe2", b"\xed\xa0\x80",
           b"\xed\xbf\xbf", b"\xe0\x80\x80", b"\xf0\x80\x80\x80", b"\xf0\x9f", b"\xf0\x9f\x98", b"\xf4\x90\x80\x80",
           b"\xf5", b"\xff", b"\xfe\xff", b"\xef\xbf\xbd"]


def _class(category: str, cp: int) -> str:
    if cp in (0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x85) or category in ("Zs", "Zl", "Zp"):
        return "space"
    return category[0] if category[0] in "LN" else "other"


def _stable_code_points() -> list[int]:
    """Code points assigned in Unicode 3.2 whose class did not change since (see the module docstring)."""
    old = unicodedata.ucd_3_2_0
    stable = []
    for cp in range(0x20, 0x30000):
        if 0xD800 <= cp <= 0xDFFF:
            continue
        before, now = old.category(chr(cp)), unicodedata.category(chr(cp))
        if before not in ("Cn", "Cs", "Co") and _class(before, cp) == _class(now, cp):
            stable.append(cp)
    return stable


class Corpus:
    """Fuzz strings from a seed (the same seed gives the same strings on every machine)."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.stable = _stable_code_points()

    def _text(self, kind: int) -> str:
        r = self.rng
        if kind == 0:
            return " ".join(r.choice(WORDS) for _ in range(r.randint(1, 6)))
        if kind == 1:
            return r.choice(["", " "]) + r.choice(WORDS) + r.choice(CONTRACTIONS) + r.choice(["", " ", "x", "re"])
        if kind == 2:
            return "".join(r.choice("0123456789") for _ in range(r.randint(1, 12)))
        if kind == 3:
            return "".join(chr(r.choice([r.randint(0x4E00, 0x9FA5), r.randint(0x3041, 0x3093),
                                         r.randint(0x30A1, 0x30F6), r.randint(0xAC00, 0xD7A3)]))
                           for _ in range(r.randint(1, 6)))
        if kind == 4:
            return "".join(r.choice(EMOJI) for _ in range(r.randint(1, 3)))
        if kind == 5:
            return r.choice(["e", "a", " ", "", "x", "1"]) + "".join(r.choice(COMBINING)
                                                                       for _ in range(r.randint(1, 3)))
        if kind == 6:
            return r.choice(SPACES) * r.randint(1, 4)
        if kind == 7:
            return " " * r.randint(1, 6) + "".join(r.choice(PUNCT) for _ in range(r.randint(1, 3)))
        if kind == 8:
            return r.choice(NUMBERS_OTHER)
        if kind == 9:
            return "".join(chr(r.choice(self.stable)) for _ in range(r.randint(1, 5)))
        return r.choice(PUNCT) + r.choice(["\n", "\r\n", "\n\n", ""])

    def string(self) -> bytes:
        """One fuzz string: 1..10 fragments of random kinds, some of them invalid UTF-8."""
        r = self.rng
        parts: list[bytes] = []
        for _ in range(r.randint(1, 10)):
            if r.random() < 0.08:
                parts.append(r.choice(INVALID) if r.random() < 0.7 else bytes([r.randint(0x80, 0xFF)]))
            else:
                parts.append(self._text(r.randint(0, 10)).encode("utf-8"))
        return b"".join(parts)

    def strings(self, count: int) -> list[bytes]:
        """`count` fuzz strings."""
        return [self.string() for _ in range(count)]
