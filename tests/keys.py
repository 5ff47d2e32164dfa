"""RSA key pairs for OAuth tests, made once per process (2048-bit generation is slow)."""

from __future__ import annotations

import functools

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

__all__ = ["rsa_pems"]


@functools.cache
def rsa_pems(name: str = "default") -> tuple[str, str]:
    """``(private PEM, public PEM)`` for the key called ``name``; each name is a different key."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private, public
