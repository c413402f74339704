"""The store's backend on a Qdrant server or cluster (`--qdrant-url`), through qdrant-client.

Any QdrantClient works here; the tests hand it qdrant-client's local mode, standing in for a server
(qdrant-client's own habit: one test suite, local and remote). The data dir's embedded store never uses
local mode (it unpickles its files and scans in pure Python): that is search/store_edge.py.
"""

from __future__ import annotations

import warnings
from typing import Any

from search.store import COLLECTION, DENSE, VISUAL, Condition, Record, StoreError, sparse_items


def remote_client(url: str, api_key: str | None = None, timeout: int = 30):
    """A client of the Qdrant server at `url` (http:// or https://), sending `api_key` with every request.
    Makes no request: qdrant-client's version check would run in a thread whose failure prints a
    traceback, and `connect` checks the server itself."""
    from qdrant_client import QdrantClient

    return QdrantClient(url=url, api_key=api_key, timeout=timeout, check_compatibility=False)


def _filter(where: list[Condition]):
    from qdrant_client import models

    if not where:
        return None
    must = [models.FieldCondition(key=c.key, match=models.MatchValue(value=c.value)) if c.value is not None else
            models.FieldCondition(key=c.key, range=models.Range(gte=c.gte, gt=c.gt, lte=c.lte)) for c in where]
    return models.Filter(must=must)


def _record(p, score: float = 0.0) -> Record:
    vector = dict(p.vector or {})
    if VISUAL in vector:
        vector[VISUAL] = dict(zip(vector[VISUAL].indices, vector[VISUAL].values, strict=True))
    return Record(str(p.id), p.payload or {}, vector, score)


def _sparse(weights: dict[int, float]):
    from qdrant_client import models

    indices, values = sparse_items(weights)
    return models.SparseVector(indices=indices, values=values)


class ServerBackend:
    def __init__(self, client, collection: str = COLLECTION):
        self.client = client
        self.collection = collection

    @classmethod
    def connect(cls, url: str, api_key: str | None = None, timeout: int = 30) -> ServerBackend:
        from qdrant_client.http.exceptions import ApiException

        client = remote_client(url, api_key, timeout)
        try:  # one round trip now: an unreachable server or a refused key is one clear error, not a traceback later
            client.get_collections()
        except ApiException as exc:
            client.close()
            reason = " ".join(str(exc).split("Raw response content")[0].split()) or type(exc).__name__
            raise StoreError(f"cannot use the Qdrant server at {url}: {reason}") from exc
        return cls(client)

    def close(self) -> None:
        self.client.close()

    def exists(self) -> bool:
        return self.client.collection_exists(self.collection)

    def vector_size(self) -> int | None:
        return int(self.client.get_collection(self.collection).config.params.vectors["video"].size)

    def has_sparse(self, name: str) -> bool:
        return name in (self.client.get_collection(self.collection).config.params.sparse_vectors or {})

    def create(self, dim: int) -> None:
        from qdrant_client import models

        if self.exists():
            self.client.delete_collection(self.collection)
        params = models.VectorParams(size=dim, distance=models.Distance.COSINE)
        self.client.create_collection(self.collection, vectors_config={c: params for c in DENSE},
                                      sparse_vectors_config={VISUAL: models.SparseVectorParams()})

    def create_payload_index(self, name: str, kind: str) -> None:
        from qdrant_client import models

        schema = models.PayloadSchemaType.KEYWORD if kind == "keyword" else models.PayloadSchemaType.FLOAT
        with warnings.catch_warnings():  # local mode (the tests' stand-in) ignores payload indexes, and says so
            warnings.simplefilter("ignore")
            self.client.create_payload_index(self.collection, name, field_schema=schema)

    def upsert(self, points: list[tuple[str, dict[str, Any], dict[str, Any]]]) -> None:
        from qdrant_client import models

        structs = []
        for pid, vectors, payload in points:
            vector = {k: (_sparse(v) if k == VISUAL else v) for k, v in vectors.items()}
            structs.append(models.PointStruct(id=pid, vector=vector, payload=payload))
        self.client.upsert(self.collection, points=structs, wait=True)

    def set_payloads(self, updates: dict[str, dict[str, Any]]) -> None:
        from qdrant_client import models

        ops = [models.SetPayloadOperation(set_payload=models.SetPayload(payload=fields, points=[pid]))
               for pid, fields in updates.items()]
        self.client.batch_update_points(self.collection, ops, wait=True)

    def set_vectors(self, updates: dict[str, dict[str, list[float]]]) -> None:
        from qdrant_client import models

        points = [models.PointVectors(id=pid, vector=vectors) for pid, vectors in updates.items()]
        self.client.update_vectors(self.collection, points=points, wait=True)

    def delete(self, where: list[Condition]) -> None:
        from qdrant_client import models

        self.client.delete(self.collection, points_selector=models.FilterSelector(filter=_filter(where)), wait=True)

    def count(self, where: list[Condition]) -> int:
        return self.client.count(self.collection, count_filter=_filter(where), exact=True).count

    def scroll(self, where, fields, with_vectors, offset, limit):
        page, offset = self.client.scroll(self.collection, scroll_filter=_filter(where), limit=limit, offset=offset,
                                          with_payload=fields, with_vectors=with_vectors)
        return [_record(p) for p in page], offset

    def query(self, channel, vector, limit, where) -> list[Record]:
        query = _sparse(vector) if channel == VISUAL else vector
        found = self.client.query_points(self.collection, query=query, using=channel, limit=limit,
                                         query_filter=_filter(where), with_payload=True).points
        return [_record(p, p.score) for p in found]

    def retrieve(self, ids: list[str], with_vectors) -> list[Record]:
        found = self.client.retrieve(self.collection, ids=ids, with_payload=True, with_vectors=with_vectors)
        return [_record(p) for p in found]
