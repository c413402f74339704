"""Media in, catalog and index out: decoding, audio, ASR, segmenting, embedding, batch runs."""
