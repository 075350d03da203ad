"""Which storage a URI names. Apart from both implementations, so neither imports the other."""

from __future__ import annotations

from pathlib import Path

from reckit_assets.core.io.s3 import S3Storage
from reckit_assets.core.io.storage import LocalStorage, Storage


def storage_from_uri(uri: str | Path) -> Storage:
    """``/some/dir`` or ``file:///some/dir`` -> LocalStorage; ``s3://bucket/prefix`` -> S3Storage."""
    text = str(uri)
    if text.startswith("s3://"):
        return S3Storage.from_uri(text)
    if text.startswith("file://"):
        text = text[len("file://") :]
    return LocalStorage(text)
