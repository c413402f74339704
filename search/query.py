"""Query text as every entry point (CLI, HTTP, UI) hands it to the engine."""

from __future__ import annotations

MAX_QUERY_CHARS = 1000  # longer queries are cut (CLI) or refused (HTTP): the encoder reads a few dozen words
# The HTTP API's rule for a query: a character that is not white space. The same set in Python's `re` (which
# schemathesis draws with) and Rust's `regex` (which pydantic checks with): Python's \s adds \x1c-\x1f.
QUERY_PATTERN = r"[^\s\x1c-\x1f]"


def clean_query(text: str) -> str:
    """Control characters become spaces and runs of whitespace collapse: what remains is the query."""
    return " ".join("".join(ch if ch.isprintable() else " " for ch in text).split())
