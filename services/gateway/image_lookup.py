"""LookupImage at the gateway: the upload checked and fingerprinted, the tenant's records searched.

The image is refused (INVALID_ARGUMENT) before any decoding when it is over the upload limits
(bytes, and the pixel count from its header), then fingerprinted as the worker fingerprinted
what it delivered (services/common/image_fingerprint.py), and looked up among the caller's
tenant's records only (services/common/store/image_records.py).
"""

from __future__ import annotations

from services.common import image_fingerprint, uploads
from services.common.store import ImageMatch, JobStore
from services.gateway.errors import InvalidRequest
from services.gateway.limits import Limits


def lookup(store: JobStore, limits: Limits, tenant: str, data: bytes) -> list[ImageMatch]:
    if not data:
        raise InvalidRequest([("image", "is empty: send the PNG, JPEG or WEBP bytes to look up")])
    if len(data) > limits.max_upload_bytes:
        raise InvalidRequest([("image", f"{len(data)} bytes is over the limit of {limits.max_upload_bytes} bytes")])
    try:
        query = image_fingerprint.of_file(data, limits.max_upload_pixels)
    except uploads.UnusableImage as err:
        raise InvalidRequest([("image", str(err))]) from None
    return store.lookup_image(tenant, query)
