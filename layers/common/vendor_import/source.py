"""The uploaded file as connectors see it: size, name and byte streams from an offset."""

from __future__ import annotations

import io
import os
from typing import BinaryIO, Protocol


class Source(Protocol):
    name: str
    size: int

    def open(self, start: int = 0) -> BinaryIO:
        """A binary stream of the file from byte ``start`` (read it, then close it)."""
        ...


class FileSource:
    """A local file (tests, benchmarks)."""

    def __init__(self, path: str, name: str | None = None):
        self.path = path
        self.name = name or os.path.basename(path)
        self.size = os.path.getsize(path)

    def open(self, start: int = 0) -> BinaryIO:
        f = open(self.path, "rb")  # noqa: SIM115 - returned to the caller who closes it
        f.seek(start)
        return f


class BytesSource:
    """An in-memory file (unit tests)."""

    def __init__(self, data: bytes, name: str = "upload"):
        self.data = data
        self.name = name
        self.size = len(data)

    def open(self, start: int = 0) -> BinaryIO:
        return io.BytesIO(self.data[start:])


class S3Source:
    """An S3 object version, streamed with ranged GETs (never loaded whole)."""

    def __init__(self, s3_client, bucket: str, key: str, version_id: str | None = None,
                 size: int | None = None):
        self.s3 = s3_client
        self.bucket = bucket
        self.key = key
        self.version_id = version_id
        self.name = key.rsplit("/", 1)[-1]
        if size is None:
            head = self.s3.head_object(**self._ids())
            size = head["ContentLength"]
        self.size = int(size)

    def _ids(self) -> dict:
        ids = {"Bucket": self.bucket, "Key": self.key}
        if self.version_id:
            ids["VersionId"] = self.version_id
        return ids

    def open(self, start: int = 0) -> BinaryIO:
        if start >= self.size:
            return io.BytesIO(b"")
        kwargs = self._ids()
        if start:
            kwargs["Range"] = f"bytes={start}-"
        body = self.s3.get_object(**kwargs)["Body"]
        return io.BufferedReader(_StreamingReader(body), buffer_size=256 * 1024)


class _StreamingReader(io.RawIOBase):
    """Adapts botocore's StreamingBody to a readable file object (for lxml, csv, io.Buffered)."""

    def __init__(self, body):
        self._body = body

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        data = self._body.read(len(b))
        n = len(data)
        b[:n] = data
        return n

    def close(self) -> None:
        try:
            self._body.close()
        finally:
            super().close()
