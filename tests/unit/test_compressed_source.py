"""Compressed uploads (source.py) and limits in the vendor's own units (units.py)."""

from __future__ import annotations

import gzip
import os

import pytest
from vendor_import.errors import InputError
from vendor_import.source import BytesSource, S3Source, compression_of, plain_name, stage_gunzipped
from vendor_import.units import limit_text, size_text

GZ = gzip.compress(b"x", mtime=0)  # fixed header: parameter ids must be the same in every xdist worker


# -- what is compressed, and how ---------------------------------------------------------------------

@pytest.mark.parametrize(("name", "encoding", "head"), [
    ("events.ndjson", "gzip", GZ[:8]),            # aws s3 cp --content-encoding gzip
    ("events.ndjson", "x-gzip", GZ[:8]),
    ("events.ndjson", "GZIP", GZ[:8]),
    ("events.ndjson.gz", None, GZ[:8]),           # ETL tools' *.gz
    ("EVENTS.NDJSON.GZ", None, GZ[:8]),
    ("events.ndjson", None, GZ[:8]),              # gzip bytes under a plain name: the magic number says
])
def test_gzip_is_recognised_by_encoding_name_or_magic_number(name, encoding, head):
    assert compression_of(name, encoding, head) == "gzip"


@pytest.mark.parametrize(("name", "encoding", "head"), [
    ("events.ndjson", None, b'{"id": 1'),
    ("events.ndjson", "identity", b'{"id": 1'),
    ("model.mgl", None, b".Create "),
    ("empty.csv", None, b""),
    ("notes.csv", None, b"BZh,Name\r\n"),  # starts like bzip2, is text
])
def test_plain_files_are_not_compressed(name, encoding, head):
    assert compression_of(name, encoding, head) is None


@pytest.mark.parametrize(("name", "encoding", "head", "says"), [
    ("a.xml.zip", None, b"PK\x03\x04", "a.xml.zip is compressed with zip: only gzip is decompressed on import; "
                                       "upload the file uncompressed or gzip-compressed (one file, not an archive)"),
    ("a.csv.bz2", None, b"BZh91AY&SY", "a.csv.bz2 is compressed with bzip2: only gzip"),
    ("a.csv.xz", None, b"\xfd7zXZ\x00", "a.csv.xz is compressed with xz: only gzip"),
    ("a.csv.zst", None, b"\x28\xb5\x2f\xfd", "a.csv.zst is compressed with zstd: only gzip"),
    ("a.csv", None, b"\x28\xb5\x2f\xfd", "a.csv is compressed with zstd: only gzip"),
    ("a.csv", None, b"BZh91AY&SY", "a.csv is compressed with bzip2: only gzip"),
    ("a.csv", "br", b"abc", "a.csv is compressed with br (Content-Encoding br): only gzip"),
    ("a.csv", "deflate", b"abc", "a.csv is compressed with deflate (Content-Encoding deflate): only gzip"),
    ("a.csv", "zstd", b"abc", "a.csv is compressed with zstd (Content-Encoding zstd): only gzip"),
    ("dump.tar.gz", None, GZ[:8], "dump.tar.gz is compressed with tar+gzip: only gzip is decompressed on "
                                  "import; upload the file uncompressed or gzip-compressed (one file, not an archive)"),
    ("dump.tgz", None, GZ[:8], "dump.tgz is compressed with tar+gzip: only gzip"),
])
def test_other_compressions_are_refused_by_name(name, encoding, head, says):
    with pytest.raises(InputError) as err:
        compression_of(name, encoding, head)
    assert err.value.message.startswith(says)


def test_the_decompressed_name_drops_gz():
    assert plain_name("events.ndjson.gz") == "events.ndjson"
    assert plain_name("events.ndjson.GZ") == "events.ndjson"
    assert plain_name("events.ndjson") == "events.ndjson"


# -- staging the decompressed copy ------------------------------------------------------------------------

def _staged(aws_clients, key: str) -> bytes:
    return aws_clients["s3"].get_object(Bucket="bkt-gz", Key=key)["Body"].read()


def test_small_gzip_is_staged_in_one_put(aws):
    s3 = aws["s3"]
    s3.create_bucket(Bucket="bkt-gz")
    plain = b"line\n" * 1000
    n = stage_gunzipped(BytesSource(gzip.compress(plain), "x.gz"), s3, "bkt-gz", "work/j/source/x",
                        max_bytes=None, too_large="never")
    assert n == 5000 and _staged(aws, "work/j/source/x") == plain


def test_large_gzip_is_staged_in_8_mib_parts_and_comes_back_identical(aws):
    s3 = aws["s3"]
    s3.create_bucket(Bucket="bkt-gz")
    block = os.urandom(1024).hex().encode()  # 2 KiB that do not compress to nothing
    plain = block * (9 * 1024) + b"tail"  # 18 MiB + 4 bytes: 3 parts (8 MiB, 8 MiB, 2 MiB + 4)
    raw = gzip.compress(plain, compresslevel=1)
    source = S3Source(s3, "bkt-gz", "inbox/aep/big.ndjson.gz", size=len(raw))
    s3.put_object(Bucket="bkt-gz", Key="inbox/aep/big.ndjson.gz", Body=raw)
    n = stage_gunzipped(source, s3, "bkt-gz", "work/j/source/big.ndjson", max_bytes=None, too_large="never")
    assert n == 18 * 1024 * 1024 + 4
    assert _staged(aws, "work/j/source/big.ndjson") == plain
    head = s3.head_object(Bucket="bkt-gz", Key="work/j/source/big.ndjson")
    assert head["ETag"].strip('"').endswith("-3")  # a multipart upload of 3 parts
    assert s3.list_multipart_uploads(Bucket="bkt-gz").get("Uploads", []) == []


def test_decompression_stops_at_the_limit_and_leaves_no_upload_behind(aws):
    s3 = aws["s3"]
    s3.create_bucket(Bucket="bkt-gz")
    bomb = gzip.compress(b"\0" * (20 * 1024 * 1024))  # 20 MiB of zeros: ~20 KB compressed
    with pytest.raises(InputError) as err:
        stage_gunzipped(BytesSource(bomb, "bomb.gz"), s3, "bkt-gz", "work/j/source/bomb", max_bytes=10 * 1024 * 1024,
                        too_large="too large")
    assert err.value.message == "too large"
    assert s3.list_objects_v2(Bucket="bkt-gz").get("KeyCount") == 0
    assert s3.list_multipart_uploads(Bucket="bkt-gz").get("Uploads", []) == []


@pytest.mark.parametrize(("raw", "says"), [
    (b"\x1f\x8b\x08\x00garbage-not-deflate", "bad.gz is not valid gzip"),
    (gzip.compress(b"a" * 100_000, mtime=0)[:-10], "bad.gz is not valid gzip"),  # truncated upload
])
def test_invalid_gzip_is_an_input_error(aws, raw, says):
    s3 = aws["s3"]
    s3.create_bucket(Bucket="bkt-gz")
    with pytest.raises(InputError) as err:
        stage_gunzipped(BytesSource(raw, "bad.gz"), s3, "bkt-gz", "work/j/source/bad", max_bytes=None, too_large="x")
    assert err.value.message.startswith(says)


# -- limits in the vendor's units ---------------------------------------------------------------------------

@pytest.mark.parametrize(("owner", "n", "text"), [
    ("hopex", 31_457_280, "HOPEX's 30 MB limit (31,457,280 bytes)"),
    ("aep", 1_000_000, "AEP's 1 MB limit (1,000,000 bytes)"),
    ("the trigger file", 65_536, "the trigger file's 64 KB limit (65,536 bytes)"),
    ("aep", 999_985, "AEP's limit of 999,985 bytes"),
])
def test_limits_are_stated_in_the_vendors_units_with_the_exact_bytes(owner, n, text):
    assert limit_text(owner, n) == text


def test_size_text_picks_the_round_unit():
    assert [size_text(n) for n in (1024, 4 << 20, 2 << 30, 1_500)] == ["1 KB", "4 MB", "2 GB", "1,500 bytes"]
