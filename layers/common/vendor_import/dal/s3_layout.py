"""Where things live in the import bucket, and the S3 operations on them.

inbox/<vendor>/...                      uploads (the only prefix that triggers imports)
work/<job_id>/rejects/<part>.csv|.raw   rejects staged by vendor steps (lifecycle-expired)
rejects/<vendor>/<job_id>/...           the rejects Finalize assembled (normalised CSV + raw)
status/<vendor>/<job_id>.json           the status record as JSON
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from typing import Any

from ..model import REJECT_CSV_HEADER, RejectRow
from ..scrub import spreadsheet_cell


def work_prefix(job_id: str) -> str:
    return f"work/{job_id}/rejects/"


def rejects_prefix(vendor: str, job_id: str) -> str:
    return f"rejects/{vendor}/{job_id}/"


def message_key(job_id: str) -> str:
    """The whole text of a message too long for the state (the state carries it cut)."""
    return f"work/{job_id}/message.txt"


def error_key(job_id: str) -> str:
    """The whole message of a step's error too long for the state."""
    return f"work/{job_id}/error.txt"


def status_key(vendor: str, job_id: str) -> str:
    return f"status/{vendor}/{job_id}.json"


def rows_to_csv(rows: list[RejectRow]) -> bytes:
    """The normalised rejects CSV people open in a spreadsheet: formula starts
    (= + - @ tab CR) neutralised and control characters escaped (OWASP CSV injection)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    for row in rows:
        writer.writerow([spreadsheet_cell(cell) for cell in row.as_row()])
    return buf.getvalue().encode("utf-8")


class S3Store:
    def __init__(self, s3_client, bucket: str):
        self.s3 = s3_client
        self.bucket = bucket

    # -- staging by vendor steps -----------------------------------------------------------------
    def stage_rejects(self, job_id: str, part_id: str, rows: list[RejectRow],
                      raw: bytes | None) -> None:
        prefix = work_prefix(job_id)
        if rows:
            self.s3.put_object(Bucket=self.bucket, Key=f"{prefix}{part_id}.csv", Body=rows_to_csv(rows))
        if raw:
            self.s3.put_object(Bucket=self.bucket, Key=f"{prefix}{part_id}.raw", Body=raw)

    def staged_parts(self, job_id: str) -> tuple[list[str], list[str]]:
        """(csv part keys, raw part keys), each in part order."""
        csv_keys, raw_keys = [], []
        paginator = self.s3.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=work_prefix(job_id)):
            for obj in page.get("Contents", []):
                key = obj["Key"]
                (csv_keys if key.endswith(".csv") else raw_keys).append(key)
        return sorted(csv_keys), sorted(raw_keys)

    # -- assembly by Finalize ------------------------------------------------------------------------
    def _iter_parts(self, keys: list[str], head: bytes = b"", tail: bytes = b"") -> Iterator[bytes]:
        if head:
            yield head
        for key in keys:
            body = self.s3.get_object(Bucket=self.bucket, Key=key)["Body"]
            yield from body.iter_chunks(1024 * 1024)
        if tail:
            yield tail

    def concatenate(self, dest_key: str, keys: list[str], *, head: bytes = b"", tail: bytes = b"",
                    content_type: str = "application/octet-stream") -> int:
        """Write head + parts + tail to dest_key as a stream (multipart for large results).
        Returns the number of bytes written."""
        stream = _ChunkStream(self._iter_parts(keys, head, tail))
        self.s3.upload_fileobj(stream, self.bucket, dest_key, ExtraArgs={"ContentType": content_type})
        return stream.total

    def count_rows(self, keys: list[str]) -> int:
        """CSV records in the parts (a quoted reason may hold a line break: not a new row)."""
        stream = io.TextIOWrapper(io.BufferedReader(_ChunkStream(self._iter_parts(keys))),
                                  encoding="utf-8", errors="replace", newline="")
        return sum(1 for _ in csv.reader(stream))

    def put_text(self, key: str, text: str) -> None:
        self.s3.put_object(Bucket=self.bucket, Key=key, ContentType="text/plain; charset=utf-8",
                           Body=text.encode("utf-8"))

    def get_text(self, key: str) -> str | None:
        try:
            return self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read().decode("utf-8")
        except Exception:  # noqa: BLE001 - gone (lifecycle) or unreadable: the cut text stands
            return None

    def put_json(self, key: str, doc: dict[str, Any]) -> None:
        self.s3.put_object(Bucket=self.bucket, Key=key, ContentType="application/json",
                           Body=json.dumps(doc, indent=2, default=str).encode("utf-8"))

    def header_csv(self) -> bytes:
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerow(REJECT_CSV_HEADER)
        return buf.getvalue().encode()

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"


class _ChunkStream(io.RawIOBase):
    """A readable file over an iterator of byte chunks (for upload_fileobj)."""

    def __init__(self, chunks: Iterator[bytes]):
        self._chunks = chunks
        self._buf = b""
        self.total = 0

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        while not self._buf:
            try:
                self._buf = next(self._chunks)
            except StopIteration:
                return 0
        n = min(len(b), len(self._buf))
        b[:n] = self._buf[:n]
        self._buf = self._buf[n:]
        self.total += n
        return n
