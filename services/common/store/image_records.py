"""Every delivered image's fingerprint, per tenant, kept for the retention period: what
`LookupImage` searches ("was this made here?", docs/ARCHITECTURE.md).

    tenant:<t>:image:<sha256>        hash  job_id, index, mime_type, created_at, phash (hex),
                                           thumbnail, provenance (JSON); expires after the retention
    tenant:<t>:phash:<band>:<value>  zset  sha256 of the tenant's images whose hash has that byte
                                           in that band, scored by when their record expires

A lookup reads the record of the query's sha256, then the candidates of every band's value and
its one-bit neighbours (image_fingerprint.probes), and keeps those that are the same picture
(image_fingerprint.likeness). Keys are the tenant's own, so no lookup ever reads another
tenant's images. An image recorded again (the same bytes from a replayed request) points at
its newest job.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from services.common import image_fingerprint as fp


@dataclass(frozen=True)
class ImageMatch:
    job_id: str
    index: int
    mime_type: str
    created_at: float
    provenance_json: str
    exact: bool  # the very bytes delivered
    likeness: fp.Likeness


class ImageRecords:
    """A mixin of JobStore."""

    def image_key(self, tenant: str, sha256: str) -> str:
        return f"{self.prefix}tenant:{tenant}:image:{sha256}"

    def phash_key(self, tenant: str, band: int, value: int) -> str:
        return f"{self.prefix}tenant:{tenant}:phash:{band}:{value}"

    def record_image(self, tenant: str, job_id: str, index: int, mime_type: str, fingerprint: fp.Fingerprint,
                     provenance_json: str, retention_seconds: int, now: float | None = None) -> None:
        now = time.time() if now is None else now
        expires = now + retention_seconds
        pipe = self.client.pipeline(transaction=True)
        key = self.image_key(tenant, fingerprint.sha256)
        pipe.hset(key, mapping={
            "job_id": job_id, "index": index, "mime_type": mime_type, "created_at": repr(now),
            "phash": f"{fingerprint.phash:016x}", "thumbnail": fingerprint.thumbnail, "provenance": provenance_json,
        })
        pipe.expire(key, retention_seconds)
        for band, value in enumerate(fp.bands(fingerprint.phash)):
            bucket = self.phash_key(tenant, band, value)
            pipe.zremrangebyscore(bucket, "-inf", now)  # records that expired leave their buckets
            pipe.zadd(bucket, {fingerprint.sha256: expires})
            pipe.expire(bucket, retention_seconds)
        pipe.execute()

    def lookup_image(self, tenant: str, query: fp.Fingerprint, now: float | None = None,
                     limit: int = 10) -> list[ImageMatch]:
        """The tenant's recorded images that are the query's picture: the exact file first, then by likeness."""
        now = time.time() if now is None else now
        pipe = self.client.pipeline(transaction=False)
        for band, value in fp.probes(query.phash):
            pipe.zrangebyscore(self.phash_key(tenant, band, value), now, "+inf")
        candidates = {query.sha256.encode()}
        for members in pipe.execute():
            candidates.update(members)
        shas = sorted(c.decode() for c in candidates)
        pipe = self.client.pipeline(transaction=False)
        for sha in shas:
            pipe.hmget(self.image_key(tenant, sha), "phash", "thumbnail")
        live = [(sha, int(phash, 16), thumbnail) for sha, (phash, thumbnail) in zip(shas, pipe.execute(), strict=True)
                if phash is not None and thumbnail is not None]  # not expired since it was listed
        seen = fp.likenesses(query, [h for _, h, _ in live], [t for _, _, t in live])
        matches = [(sha == query.sha256, sha, like) for (sha, _, _), like in zip(live, seen, strict=True)
                   if sha == query.sha256 or like.same_picture]
        matches.sort(key=lambda m: (not m[0], m[2].phash_distance, -m[2].psnr_16))
        out = []
        for exact, sha, seen in matches[:limit]:
            record = self.client.hgetall(self.image_key(tenant, sha))
            if not record:
                continue
            out.append(ImageMatch(
                job_id=record[b"job_id"].decode(), index=int(record[b"index"]), mime_type=record[b"mime_type"].decode(),
                created_at=float(record[b"created_at"]), provenance_json=record[b"provenance"].decode(), exact=exact,
                likeness=seen,
            ))
        return out
