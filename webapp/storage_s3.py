"""The blob store on an S3-compatible object store (AWS S3, MinIO, Ceph, ...), and the choice of
store by URL.

``BLOB_STORE_URL`` (app config or environment):

* unset, or ``file:///srv/interformer/blobs``, or a plain path: ``LocalBlobStore`` (the default
  is ``DATA_DIR/blobs``);
* ``s3://bucket/optional/prefix?endpoint_url=http://minio:9000&region=eu-west-1``: ``S3BlobStore``
  with boto3. Credentials come the usual boto3 way (``AWS_ACCESS_KEY_ID`` /
  ``AWS_SECRET_ACCESS_KEY``, a profile, an instance role). The bucket must exist; the store checks
  it at start and says so if it cannot reach it.

Atomicity: one ``PutObject`` per blob, with its ``Content-MD5``: the object store makes an
object visible only once all its bytes arrived and match, so readers see the old object or the
whole new one -- never a truncated pyramid, also when the writer dies in the middle.
"""

from __future__ import annotations

import base64
import hashlib
import os
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from .storage import BlobStore, LocalBlobStore, check_key


class BlobStoreConfigError(ValueError):
    """A ``BLOB_STORE_URL`` that cannot be used (bad syntax, bucket unreachable)."""


class S3BlobStore:
    """Blobs as objects ``<prefix>/<key>`` in one bucket."""

    def __init__(self, bucket: str, prefix: str = "", client: Any = None, **client_kwargs: Any):
        import boto3

        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.client = client or boto3.client("s3", **client_kwargs)

    def _name(self, key: str) -> str:
        check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def check(self) -> None:
        """Fail now, with a clear message, when the bucket is not reachable."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.head_bucket(Bucket=self.bucket)
        except (ClientError, BotoCoreError) as e:
            raise BlobStoreConfigError(f"the S3 bucket {self.bucket!r} is not usable: {e}") from None

    def put(self, key: str, data: bytes) -> None:
        md5 = base64.b64encode(hashlib.md5(data).digest()).decode()  # noqa: S324 -- integrity, not security
        self.client.put_object(Bucket=self.bucket, Key=self._name(key), Body=data, ContentMD5=md5)

    def get(self, key: str) -> bytes:
        try:
            obj = self.client.get_object(Bucket=self.bucket, Key=self._name(key))
        except self.client.exceptions.NoSuchKey:
            raise KeyError(key) from None
        return obj["Body"].read()

    def exists(self, key: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.head_object(Bucket=self.bucket, Key=self._name(key))
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise
        return True

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self._name(key))

    def local_path(self, key: str) -> Path | None:
        return None


def blob_store_from_url(url: str | None, data_dir: str | os.PathLike) -> BlobStore:
    """The store a ``BLOB_STORE_URL`` names (see the module docstring); checked when it is remote."""
    if not url:
        return LocalBlobStore(Path(data_dir) / "blobs")
    parts = urlsplit(str(url))
    if parts.scheme in ("", "file"):
        path = unquote(parts.path) if parts.scheme == "file" else str(url)
        if not path:
            raise BlobStoreConfigError(f"BLOB_STORE_URL {url!r} names no folder")
        return LocalBlobStore(path)
    if parts.scheme != "s3":
        raise BlobStoreConfigError(f"BLOB_STORE_URL {url!r}: use s3://bucket/prefix or a folder (file:///...)")
    if not parts.netloc:
        raise BlobStoreConfigError(f"BLOB_STORE_URL {url!r} names no bucket (s3://bucket/prefix)")
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    unknown = set(query) - {"endpoint_url", "region"}
    if unknown:
        raise BlobStoreConfigError(f"BLOB_STORE_URL {url!r}: unknown options {sorted(unknown)} "
                                   "(known: endpoint_url, region)")
    kwargs: dict[str, Any] = {}
    if query.get("endpoint_url"):
        kwargs["endpoint_url"] = query["endpoint_url"]
    if query.get("region"):
        kwargs["region_name"] = query["region"]
    store = S3BlobStore(parts.netloc, unquote(parts.path), **kwargs)
    store.check()
    return store
