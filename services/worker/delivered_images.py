"""Every image the worker delivers is recorded for LookupImage ("was this made here?"): its
fingerprint (services/common/image_fingerprint.py), job, index and provenance under its
tenant, for `ATELIER_IMAGE_RECORD_RETENTION_DAYS` (services/common/store/image_records.py).

The record is written before the artifact, so no image is delivered unrecorded; an image whose
artifact is then refused (a later attempt wrote that index first) is the same picture of the
same job, and recording it again changes nothing a lookup sees.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np

from services.common import events as ev
from services.common import image_fingerprint
from services.common.jobs import OutputFormat
from services.common.store import JobStore
from services.worker.images import MIME_TYPES

RAW = MIME_TYPES[OutputFormat.RAW_RGBA8]


@dataclasses.dataclass(frozen=True)
class DeliveredImages:
    store: JobStore
    tenant: str
    retention_seconds: int

    def record(self, job_id: str, payload: ev.Artifact, blob: bytes) -> None:
        if payload.mime_type == RAW:
            pixels = np.frombuffer(blob, dtype=np.uint8).reshape(payload.height, payload.width, 4)
            fingerprint = image_fingerprint.of_rgba(pixels, blob)
        else:
            fingerprint = image_fingerprint.of_file(blob, max_pixels=payload.width * payload.height)
        provenance = json.dumps(dataclasses.asdict(payload.provenance), sort_keys=True)
        self.store.record_image(self.tenant, job_id, payload.index, payload.mime_type, fingerprint, provenance,
                                self.retention_seconds)
