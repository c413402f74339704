"""Query text as every entry point (CLI, HTTP, UI) hands it to the engine."""

from __future__ import annotations

import unicodedata

MAX_QUERY_CHARS = 1000  # longer queries are cut (CLI) or refused (HTTP): the encoder reads a few dozen words


QUERY_PATTERN = r"[^\s\x00-\x1f\x7f-\x9f]"  # a query has a character that is neither whitespace nor a control


def clean_query(text: str) -> str:
    """Control characters (Cc) become spaces and runs of whitespace collapse: what remains is the query. (Other
    unprintable characters, such as a zero-width space, are left to the tokenizer, which drops them; so the
    HTTP API's QUERY_PATTERN says exactly which queries are empty.)"""
    return " ".join("".join(" " if unicodedata.category(ch) == "Cc" else ch for ch in text).split())
