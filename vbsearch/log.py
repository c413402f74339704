"""The one logging configuration point."""

from __future__ import annotations

import logging
import os
import warnings


def setup_logging(verbosity: int = 0) -> None:
    """0 = warnings and our info lines, 1 = debug for vbsearch, 2+ = debug for everything."""
    level = logging.DEBUG if verbosity >= 2 else logging.WARNING
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    ours = logging.DEBUG if verbosity >= 1 else logging.INFO
    for name in ("vbsearch", "indexer", "search", "model", "ui"):
        logging.getLogger(name).setLevel(ours)
    if verbosity < 2:
        # Third-party chatter that says nothing an operator can act on.
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        warnings.filterwarnings("ignore", category=FutureWarning)
