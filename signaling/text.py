"""Text typed by one user and shown to others (names, titles, a welcome message, an answer)."""

from __future__ import annotations

import re
import unicodedata

# Bidi controls (they turn "Élève" into a reversed impostor) and other controls: never in a name.
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def clean_text(value: str, limit: int) -> str:
    """A name or a title as shown to others: no control or bidi characters, runs of spaces as one."""
    return " ".join(_UNPRINTABLE.sub(" ", value).split())[:limit]


def search_key(value: str) -> str:
    """What a search compares, the same on every database: any case, with or without accents
    ("elodie" finds "Élodie"; SQLite's lower() knows only ASCII, PostgreSQL's follows its locale)."""
    decomposed = unicodedata.normalize("NFKD", value.casefold())
    # Folded again: some letters decompose to capitals only (the mathematical bold A, U+1D400, to "A").
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


def clean_paragraphs(value: str, limit: int) -> str:
    """Several lines (a message, an answer): each line cleaned as above, empty lines dropped."""
    lines = (clean_text(line, limit) for line in value.replace("\r\n", "\n").split("\n"))
    return "\n".join(line for line in lines if line)[:limit]
