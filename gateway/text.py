"""Free text that callers choose (purposes, notes, names) and that people later read.

A purpose with a carriage return and terminal escapes redrew an operator's table row to
hide the columns an approval would grant; a newline and ``<!--`` rewrote the public
Markdown report (review, 2026-12-04). So such text is refused where it enters (``plain``)
and escaped wherever it is shown (``shown``, ``markdown_cell``).
"""

from __future__ import annotations

import unicodedata

from federation.envelope import MAX_PURPOSE_CHARS
from gateway.errors import InvalidArgument

# Control, format (bidi overrides, zero-width), line and paragraph separators.
_HIDDEN = frozenset({"Cc", "Cf", "Zl", "Zp"})


def plain(value: str, what: str) -> str:
    """``value`` if it holds no control or invisible character; else refused naming it."""
    bad = next((c for c in value if unicodedata.category(c) in _HIDDEN), None)
    if bad is not None:
        raise InvalidArgument(
            f"{what} holds a control or invisible character (U+{ord(bad):04X}): write plain text"
        )
    return value


def check_purpose(value: str) -> None:
    """A purpose is a sentence: signed, logged and audited wherever it goes."""
    if len(value) > MAX_PURPOSE_CHARS:
        raise InvalidArgument(f"the purpose may be at most {MAX_PURPOSE_CHARS} characters")


def shown(value: str) -> str:
    """For a terminal or a log line: each character ``plain`` refuses as ``\\uXXXX``
    (a full-width space, common in Chinese names, stays as it is)."""
    return "".join(f"\\u{ord(c):04x}" if unicodedata.category(c) in _HIDDEN else c for c in value)


# Table structure (|, line breaks), HTML (< >, &), code spans and links or images ([ ] ( ) !)
_MARKDOWN = str.maketrans(
    {
        "|": "\\|",
        "\\": "\\\\",
        "`": "\\`",
        "<": "&lt;",
        ">": "&gt;",
        "&": "&amp;",
        "[": "\\[",
        "]": "\\]",
        "(": "\\(",
        ")": "\\)",
        "!": "\\!",
    }
)


def markdown_cell(value: str) -> str:
    """A table cell of a Markdown document: one line, no markup of the writer's own."""
    return shown(value).translate(_MARKDOWN)
