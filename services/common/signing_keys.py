"""The service's content-credential signing key and certificate chain.

Production reads both from a secret (docs/DEPLOY.md, "Secrets": `ATELIER_SIGNING_CERT_CHAIN`,
`ATELIER_SIGNING_KEY`). `atelier up` makes a development chain: a CA and an ES256 (P-256)
leaf it issued, with the extensions C2PA's signer profile asks of a signing certificate (the
leaf: digitalSignature, an extended key usage of emailProtection, not a CA; the CA:
keyCertSign), so the c2pa library accepts it; a reader trusts it only when told to trust the CA.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CHAIN_FILE, KEY_FILE, CA_FILE = "signing-chain.pem", "signing-key.pem", "signing-ca.pem"


class SigningKeyError(ValueError):
    """The configured key or chain cannot sign (named in the message)."""


@dataclass(frozen=True)
class SigningMaterial:
    chain_pem: bytes  # the leaf first, then the CA(s) that issued it
    key_pem: bytes  # PKCS#8


def _name(common_name: str, organization: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization)])


def _usage(*, signer: bool) -> x509.KeyUsage:
    return x509.KeyUsage(digital_signature=signer, content_commitment=False, key_encipherment=False,
                         data_encipherment=False, key_agreement=False, key_cert_sign=not signer, crl_sign=not signer,
                         encipher_only=False, decipher_only=False)


def development_chain(organization: str = "Atelier development", days: int = 365) -> tuple[SigningMaterial, bytes]:
    """A fresh CA and a leaf it signed: (the leaf's signing material, the CA certificate PEM)."""
    now = datetime.datetime.now(datetime.UTC)
    start, end = now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=days)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name(f"{organization} CA", organization)
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(start).not_valid_after(end)
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(_usage(signer=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (x509.CertificateBuilder().subject_name(_name(f"{organization} content credentials", organization))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(start).not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_usage(signer=True), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    chain = leaf.public_bytes(pem) + ca.public_bytes(pem)
    key_pem = key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return SigningMaterial(chain, key_pem), ca.public_bytes(pem)


def write_development_chain(folder: Path) -> tuple[Path, Path, Path]:
    """(chain, key, CA) files in ``folder``, made once and reused: `atelier up`'s development chain."""
    folder.mkdir(parents=True, exist_ok=True)
    chain, key, ca = folder / CHAIN_FILE, folder / KEY_FILE, folder / CA_FILE
    if not (chain.exists() and key.exists() and ca.exists()):
        material, ca_pem = development_chain()
        chain.write_bytes(material.chain_pem)
        ca.write_bytes(ca_pem)
        fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(material.key_pem)
    return chain, key, ca


def read(chain_file: Path, key_file: Path) -> SigningMaterial:
    """The material in two PEM files; SigningKeyError naming the file that is missing or not PEM."""
    material = []
    for what, path, marker in (("certificate chain", chain_file, b"-----BEGIN CERTIFICATE-----"),
                               ("private key", key_file, b"PRIVATE KEY-----")):
        try:
            data = Path(path).read_bytes()
        except OSError as err:
            raise SigningKeyError(f"the signing {what} {path} cannot be read ({err.strerror})") from None
        if marker not in data:
            raise SigningKeyError(f"the signing {what} {path} is not PEM")
        material.append(data)
    return SigningMaterial(*material)


if __name__ == "__main__":  # python -m services.common.signing_keys FOLDER: a development chain for Compose
    import argparse

    parser = argparse.ArgumentParser(description="Write a development signing chain (CA, leaf, key) into FOLDER.")
    parser.add_argument("folder", type=Path, help="e.g. deploy/compose/signing")
    for path in write_development_chain(parser.parse_args().folder):
        print(path)
