"""`atelier lookup IMAGE` and `atelier verify IMAGE`: was this image made here, and is its record intact?

`lookup` asks the gateway (LookupImage) for the tenant's delivered images that are the same
picture, even resized or re-encoded. `verify` reads the image's C2PA content credentials
locally (the `c2pa-python` library, in the `server` extra) and checks the signature and the
hashes; with `--trust CA.pem` (default: the CA of `atelier up`'s development chain, when
there is one) it also says whether the signer chains to that CA. Exit status of `verify`:
0 intact, 1 tampered or unreadable, 7 no credentials, 8 intact but not signed by a trusted CA
when `--require-trust` is given.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from atelier_cli.arguments import existing_file
from atelier_cli.commands import _client, _connection_args, _run

RAW_MIME = "application/x-atelier-rgba8"
MAGIC = {b"\x89PNG": "image/png", b"\xff\xd8": "image/jpeg", b"RIFF": "image/webp"}


def register(parser: argparse.ArgumentParser, name: str) -> None:
    parser.add_argument("image", type=existing_file, help="the image file (PNG, JPEG, WEBP; or raw RGBA8 rows)")
    if name == "lookup":
        _connection_args(parser)
        parser.add_argument("--json", action="store_true", help="print the matches as JSON")
        parser.set_defaults(func=lambda args: _run(args, lookup))
    else:
        parser.add_argument("--trust", type=existing_file, default=None,
                            help="PEM CA(s) whose signers are trusted (default: `atelier up`'s development CA)")
        parser.add_argument("--credentials", type=existing_file, default=None,
                            help="the detached manifest store of raw RGBA8 rows (Artifact.content_credentials)")
        parser.add_argument("--require-trust", action="store_true", help="fail unless the signer is trusted")
        parser.add_argument("--json", action="store_true", help="print the manifest and the checks as JSON")
        parser.set_defaults(func=verify)


def lookup(args) -> int:
    from google.protobuf.json_format import MessageToDict

    with _client(args) as client:
        matches = client.lookup_image(args.image)
    if args.json:
        print(json.dumps([MessageToDict(m) for m in matches], indent=2))
        return 0 if matches else 1
    if not matches:
        print("not made here: no image this tenant was delivered is this picture")
        return 1
    for m in matches:
        p = m.provenance
        how = "the exact file" if m.exact else f"same picture ({m.phash_distance} bits, {m.thumbnail_psnr:.1f} dB)"
        model = f"{p.model_name}/{p.model_version}" if p.model_name else f"{p.upscaler_name}/{p.upscaler_version}"
        print(f"job {m.job_id} image {m.index}: {how}; {model} seed {p.seed} "
              f"delivered {m.delivered_at.ToDatetime():%Y-%m-%d %H:%M:%S} UTC as {m.mime_type}")
        if p.prompt:
            print(f"  prompt: {p.prompt}")
    return 0


def _mime(data: bytes) -> str:
    for magic, mime in MAGIC.items():
        if data.startswith(magic):
            return mime
    return RAW_MIME


def verify(args) -> int:
    from atelier_cli.config import signing_dir

    try:
        from services.common import credentials, signing_keys
    except ModuleNotFoundError as missing:
        print(f"atelier verify: needs the `server` extra (missing module {missing.name!r}): "
              "pip install 'atelier[server]'", file=sys.stderr)
        return 2

    data = Path(args.image).read_bytes()
    mime = _mime(data)
    if mime == RAW_MIME and args.credentials is None:
        print("atelier verify: not a PNG, JPEG or WEBP; raw RGBA8 rows need --credentials FILE "
              "(the artifact's content_credentials)", file=sys.stderr)
        return 2
    trust = Path(args.trust) if args.trust else signing_dir() / signing_keys.CA_FILE
    anchors = trust.read_bytes() if trust.is_file() else b""
    sidecar = Path(args.credentials).read_bytes() if args.credentials else b""
    try:
        found = credentials.verify(data, mime, sidecar, anchors)
    except credentials.NoCredentials as err:
        print(f"atelier verify: {err}", file=sys.stderr)
        return 7
    if args.json:
        print(json.dumps({"state": found.state, "intact": found.intact, "failures": found.failures,
                          "manifest": found.manifest}, indent=2))
    else:
        _describe(found, trust if anchors else None)
    if not found.intact:
        return 1
    return 8 if args.require_trust and found.state != "Trusted" else 0


def _describe(found, trust: Path | None) -> None:
    signer = found.manifest.get("signature_info", {})
    print(f"content credentials: {'intact' if found.intact else 'NOT intact'} ({found.state})")
    for failure in found.failures:
        print(f"  {failure.get('code')}: {failure.get('explanation', '')}")
    print(f"signed by: {signer.get('common_name', '?')} ({signer.get('issuer', '?')})"
          + ("" if trust is None else f"; {'trusted' if found.state == 'Trusted' else 'not trusted'} by {trust}"))
    generator = ", ".join(f"{g.get('name')} {g.get('version', '')}".strip()
                          for g in found.manifest.get("claim_generator_info", []))
    print(f"generator: {generator}")
    print(f"digital source type: {found.digital_source_type.rsplit('/', 1)[-1]}")
    p = found.provenance
    if p:
        model = f"{p.get('model_name')}/{p.get('model_version')}" if p.get("model_name") else \
            f"{p.get('upscaler_name')}/{p.get('upscaler_version')}"
        print(f"model: {model} (manifest sha256 {p.get('model_sha256') or p.get('upscaler_sha256')})")
        print(f"seed {p.get('seed')}, {p.get('sampler')} {p.get('steps')} steps, prompt: {p.get('prompt', '')!r}")
