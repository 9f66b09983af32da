"""Test files for the benchmarks, written fast in blocks: AEP NDJSON (1 KB records) and Cirrus XML."""

from __future__ import annotations

import json
from pathlib import Path

_BLOCK = 1000


def aep_record(i: int, size: int = 1024) -> bytes:
    """One NDJSON line of exactly ``size`` bytes (newline included): a profile-like record."""
    rec = {"id": f"P{i:09d}", "email": f"person{i}@example.com", "firstName": "Ada", "lastName": "Lovelace",
           "birthDate": "1815-12-10", "loyalty": {"tier": "gold", "points": i % 100_000},
           "consents": {"marketing": {"email": {"val": "y"}}}, "note": ""}
    base = len(json.dumps(rec, separators=(",", ":")).encode()) + 1
    rec["note"] = "x" * max(0, size - base)
    return json.dumps(rec, separators=(",", ":")).encode() + b"\n"


def write_ndjson(path: Path, target_bytes: int, record_bytes: int = 1024) -> int:
    """Write about ``target_bytes`` of NDJSON; return the record count."""
    template = aep_record(0, record_bytes)
    prefix, rest = template.split(b"P000000000", 1)
    count = 0
    with open(path, "wb") as f:
        while count * record_bytes < target_bytes:
            n = min(_BLOCK, -(-(target_bytes - count * record_bytes) // record_bytes))
            f.write(b"".join(prefix + b"P%09d" % (count + k) + rest for k in range(n)))
            count += n
    return count


CIRRUS_RECORD = ("  <Account>\n    <Name>Account {i:09d}</Name>\n    <Address>{i} rue de la Paix, Paris</Address>\n"
                 "    <Phone>+33 1 23 45 67 89</Phone>\n    <Email>contact{i}@example.com</Email>\n"
                 "    <Industry>Retail</Industry>\n    <LastAuditDate>2017-06-12 15:40:47+02</LastAuditDate>\n"
                 "  </Account>\n")


def cirrus_record_template(record_bytes: int = 0) -> str:
    """The record template (about 260 bytes), or one widened with Description fields to about
    ``record_bytes`` (real objects have many fields)."""
    if record_bytes <= len(CIRRUS_RECORD):
        return CIRRUS_RECORD
    extra = []
    room = record_bytes - len(CIRRUS_RECORD)
    k = 0
    while room > 60:
        k += 1
        text = "lorem ipsum dolor sit amet " * 2
        extra.append(f"    <Description{k:02d}>{text.strip()}</Description{k:02d}>\n")
        room -= len(extra[-1])
    return CIRRUS_RECORD.replace("  </Account>\n", "".join(extra) + "  </Account>\n")


def write_cirrus(path: Path, target_bytes: int, record_bytes: int = 0) -> int:
    """Write a Cirrus <Data> file of about ``target_bytes``; return the record count."""
    template = cirrus_record_template(record_bytes)
    count = 0
    with open(path, "w", encoding="utf-8") as f:
        f.write('<?xml version="1.0" encoding="UTF-8"?>\n<Data>\n')
        written = 0
        while written < target_bytes:
            block = "".join(template.format(i=count + k) for k in range(_BLOCK))
            f.write(block)
            written += len(block)
            count += _BLOCK
        f.write("</Data>\n")
    return count
