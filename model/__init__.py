"""Everything learned: feature extractors, visual vocabulary, VideoBERT. No knowledge of indexer/search/ui."""
