"""The store adapter (Qdrant), query encoding, fusion, reranking and the SearchEngine API."""
