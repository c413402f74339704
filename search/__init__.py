"""The store (Qdrant Edge embedded in published generations, qdrant-client for a server), query encoding,
fusion, reranking, the SearchEngine API, and the HTTP service with its announcement to CLI searches."""
