"""vbsearch: semantic video search for media archives, built on VideoBERT."""

__version__ = "0.1.0"
