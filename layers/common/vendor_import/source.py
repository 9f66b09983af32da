"""The uploaded file as connectors see it: size, name and byte streams from an offset."""

from __future__ import annotations

import gzip
import io
import os
import zlib
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

    def first_bytes(self, n: int) -> bytes:
        """The first ``n`` bytes (fewer for a shorter file), with one ranged GET."""
        if self.size <= 0:
            return b""
        return self.s3.get_object(**self._ids(), Range=f"bytes=0-{n - 1}")["Body"].read()

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


# -- compressed uploads ------------------------------------------------------------------------------
# IAM: the vendor function stages with PutObject and the multipart calls, which s3:PutObject
# covers, plus s3:AbortMultipartUpload, both on work/* ("Multipart upload API and permissions",
# https://docs.aws.amazon.com/AmazonS3/latest/userguide/mpuoverview.html#mpuAndPermissions).
# gzip is imported decompressed (``aws s3 cp`` of compressed exports sets Content-Encoding: gzip,
# ETL tools write *.gz). Other compressions are refused by name: a vendor would get bytes it cannot
# read. Magic numbers: RFC 1952 (gzip), PKWARE APPNOTE (zip), bzip2, xz, RFC 8878 (zstd), 7-Zip.
GZIP_MAGIC = b"\x1f\x8b"
_OTHER_MAGIC = ((b"PK\x03\x04", "zip"), (b"\xfd7zXZ\x00", "xz"),
                (b"\x28\xb5\x2f\xfd", "zstd"), (b"7z\xbc\xaf\x27\x1c", "7z"), (b"\x04\x22\x4d\x18", "lz4"))
_OTHER_SUFFIX = {".zip": "zip", ".bz2": "bzip2", ".xz": "xz", ".lzma": "lzma", ".zst": "zstd",
                 ".zstd": "zstd", ".7z": "7z", ".lz4": "lz4", ".br": "brotli", ".z": "compress (.Z)",
                 ".tgz": "tar+gzip", ".tar": "tar", ".rar": "rar"}
_GZIP_ENCODINGS = {"gzip", "x-gzip"}
MAGIC_BYTES = 10  # the longest magic number (bzip2's), read once at submit
STAGE_CHUNK_BYTES = 8 * 1024 * 1024  # one multipart part (S3: 5 MiB..5 GiB, at most 10,000 parts)
STAGE_MAX_PARTS = 10_000  # S3's limit of parts per multipart upload: 80 GiB of decompressed data


def compression_of(name: str, content_encoding: str | None, head: bytes) -> str | None:
    """"gzip" when the upload is gzip-compressed (Content-Encoding gzip, a .gz name or the gzip
    magic number), None when it is plain. Raises InputError naming any other compression."""
    from .errors import InputError

    encodings = [e.strip().lower() for e in (content_encoding or "").split(",") if e.strip()]
    encodings = [e for e in encodings if e not in ("identity", "aws-chunked")]
    lower = name.lower()
    suffix = "." + lower.rsplit(".", 1)[-1] if "." in lower else ""
    other = next((e for e in encodings if e not in _GZIP_ENCODINGS), None)
    if other is None and not lower.endswith(".tar.gz"):
        other = _OTHER_SUFFIX.get(suffix)
    if other is None and not head.startswith(GZIP_MAGIC):
        other = next((what for magic, what in _OTHER_MAGIC if head.startswith(magic)), None)
    if other is None and _is_bzip2(head):
        other = "bzip2"
    if other or lower.endswith(".tar.gz"):
        what = other or "tar+gzip"
        raise InputError(
            f"{name} is compressed with {what}{' (Content-Encoding ' + content_encoding + ')' if encodings else ''}"
            f": only gzip is decompressed on import; upload the file uncompressed or gzip-compressed"
            f"{' (one file, not an archive)' if what in ('zip', '7z', 'tar', 'tar+gzip', 'rar') else ''}"
        )
    if encodings or suffix == ".gz" or head.startswith(GZIP_MAGIC):
        return "gzip"
    return None


def _is_bzip2(head: bytes) -> bool:
    """"BZh", the block size digit, then the block magic 0x314159265359 ("1AY&SY"): a text file
    that happens to start with "BZh" is not taken for bzip2."""
    return head[:3] == b"BZh" and head[3:4].isdigit() and head[4:10] == b"1AY&SY"


def plain_name(name: str) -> str:
    """The name the decompressed file goes by: events.ndjson.gz -> events.ndjson."""
    return name[:-3] if name.lower().endswith(".gz") and len(name) > 3 else name


def stage_gunzipped(source: Source, s3_client, bucket: str, key: str, *, max_bytes: int | None,
                    too_large: str) -> int:
    """Decompress ``source`` (gzip) into s3://bucket/key with flat memory: one multipart part of
    STAGE_CHUNK_BYTES at a time (a single PutObject when it fits in one). Returns the
    decompressed size in bytes. Raises InputError when the data is not valid gzip, or, as soon
    as more than ``max_bytes`` came out, with the message ``too_large`` (a gzip bomb stops
    there: nothing much past the limit is decompressed, nothing is stored)."""
    from .errors import InputError

    upload_id = None
    parts: list[dict] = []
    total = 0
    buf = bytearray(STAGE_CHUNK_BYTES)  # one buffer, reused for every part: memory does not grow
    try:
        with source.open() as raw, gzip.GzipFile(fileobj=raw, mode="rb") as plain:
            while True:
                n = _read_into(plain, buf)
                total += n
                if max_bytes is not None and total > max_bytes:
                    raise InputError(too_large)
                if upload_id is None and n < STAGE_CHUNK_BYTES:
                    s3_client.put_object(Bucket=bucket, Key=key, Body=bytes(buf[:n]))  # fits in one request
                    return total
                if upload_id is None:
                    upload_id = s3_client.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
                if n or not parts:
                    if len(parts) >= STAGE_MAX_PARTS:
                        raise InputError(too_large)
                    body = buf if n == STAGE_CHUNK_BYTES else bytes(buf[:n])
                    etag = s3_client.upload_part(Bucket=bucket, Key=key, UploadId=upload_id,
                                                 PartNumber=len(parts) + 1, Body=body)["ETag"]
                    parts.append({"ETag": etag, "PartNumber": len(parts) + 1})
                if n < STAGE_CHUNK_BYTES:
                    break
            s3_client.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id,
                                                MultipartUpload={"Parts": parts})
            upload_id = None
            return total
    except (OSError, EOFError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError
        raise InputError(f"{source.name} is not valid gzip ({exc or type(exc).__name__}) after "
                         f"{total:,} decompressed bytes: upload it again, or uncompressed") from None
    finally:
        if upload_id is not None:  # failed half-way: no orphan parts are billed
            try:
                s3_client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
            except Exception:  # noqa: BLE001, S110 - the lifecycle rule expires work/ uploads too
                pass


def _read_into(stream, buf: bytearray) -> int:
    """Fill ``buf`` from ``stream``; short only at the end of the stream (GzipFile.readinto may
    return less than asked). Returns the number of bytes read."""
    view = memoryview(buf)
    filled = 0
    while filled < len(buf):
        n = stream.readinto(view[filled:])
        if not n:
            break
        filled += n
    return filled
