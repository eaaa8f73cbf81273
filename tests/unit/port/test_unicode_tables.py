"""The port's generated Unicode class tables: checked in, and what the generator makes from unicodedata."""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import pytest

from harness.port import unicode_tables


def test_checked_in_tables_are_what_the_generator_makes() -> None:
    text = unicode_tables.default_output().read_text(encoding="ascii")
    version = re.search(r'unicode_tables_version\[\] = "([^"]+)"', text)
    assert version is not None
    have = unicode_tables.unicode_data().unidata_version
    if version.group(1) != have:
        pytest.skip(f"the tables are from Unicode {version.group(1)}, this machine has {have} (install the test "
                    f"extras for unicodedata2 16.0.0); regenerate with `python -m harness.port.unicode_tables`")
    assert text == unicode_tables.generate()


def test_classes() -> None:
    classify = unicode_tables.classify
    assert [classify(ord(c)) for c in "aZ\u00e9\u4e00"] == [unicode_tables.CLASS_LETTER] * 4
    assert [classify(ord(c)) for c in "09\u00bd\u2167"] == [unicode_tables.CLASS_NUMBER] * 4
    spaces = "\t\n\u000b\u000c\r \u0085\u00a0\u2003\u2028\u2029\u3000"
    assert [classify(ord(c)) for c in spaces] == [unicode_tables.CLASS_SPACE] * len(spaces)
    # str.isspace() accepts these, the White_Space property (and so the regex engines) does not
    assert [classify(cp) for cp in (0x1C, 0x1F, 0x200B, 0x180E, 0x0301, ord("!"))] == [0] * 6


def test_main_writes_the_file(tmp_path: Path) -> None:
    out = tmp_path / "t.c"
    assert unicode_tables.main(["-o", str(out)]) == 0
    assert out.read_text(encoding="ascii") == unicode_tables.generate()
    ranges = unicode_tables.class_ranges()
    assert all(a[1] < b[0] for a, b in itertools.pairwise(ranges))
