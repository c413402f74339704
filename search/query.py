"""Query text as every entry point (CLI, HTTP, UI) hands it to the engine."""

from __future__ import annotations

MAX_QUERY_CHARS = 1000  # longer queries are cut (CLI) or refused (HTTP): the encoder reads a few dozen words
# The HTTP API's rule for a query: a character that is not white space (str.isspace), spelt out: `\s` differs
# between Python's `re`, Rust's `regex` (pydantic checks with it) and ECMA-262, which OpenAPI patterns follow
# (schemathesis drew "\u0085" from `[^\s]`: not white space to ECMA, white space to the other two).
QUERY_PATTERN = (r"[^\u0009-\u000d\u001c-\u0020\u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f"
                 r"\u3000]")


def clean_query(text: str) -> str:
    """Control characters become spaces and runs of whitespace collapse: what remains is the query."""
    return " ".join("".join(ch if ch.isprintable() else " " for ch in text).split())
