"""Record readers for the AEP connector: NDJSON, JSON array and CSV read as streams.

Every reader yields ``Item``s in file order, each with the byte offset where the record starts
and the offset where the next one may start, so a later Lambda run resumes with
``source.open(offset)`` exactly after the last record it committed: nothing is read twice and
nothing is skipped. Memory stays flat: at most one record (bounded by ``max_item_bytes``) and
one read chunk are held at a time.

A record that cannot be sent (bad JSON, not an object, wrong CSV field count, too large to
read) comes out as an ``Item`` with ``error`` set instead of raising, so the connector can
refuse it locally and go on. Problems that make the rest of the file unreadable (a JSON array
with broken syntax, a bad CSV header, a quote never closed) raise ``InputError``.
"""

from __future__ import annotations

import codecs
import csv
import json
import re
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from ..errors import InputError
from ..source import Source

FORMATS = ("ndjson", "json", "csv")
_EXTENSIONS = {".ndjson": "ndjson", ".jsonl": "ndjson", ".json": "json", ".csv": "csv", ".tsv": "csv"}
_CHUNK = 256 * 1024
_BOM = b"\xef\xbb\xbf"
_WS = " \t\r\n"


@dataclass(slots=True)
class Item:
    """One record of the file (or one refused locally: ``error`` set, ``record`` None)."""

    number: int  # 1-based record number in the file
    line: int  # 1-based line where the record starts
    start: int  # byte offset of the record
    end: int  # byte offset where the next record may start (the resume point)
    next_line: int  # line number at ``end``
    record: dict | None = None
    error: str | None = None
    code: str = ""
    # the record's text when it was refused locally and could be read (for the raw rejects file)
    text: str | None = None
    # NDJSON: the record's JSON as written in the file (whitespace around it stripped). It is
    # sent as it is (no re-encoding: the costliest step per record) once it parsed as an object
    raw: bytes | None = None


@dataclass(slots=True)
class Position:
    """Where reading resumes: a byte offset and the record/line numbers reached there."""

    offset: int = 0
    number: int = 0  # records before ``offset``
    line: int = 1  # line number at ``offset``


# a rejects file this connector wrote (``<name>.rejected.ndjson``), maybe renamed by resubmit
_REJECTS_NAME = re.compile(r"\.rejected(?:\.resubmit-\d{8}T\d{6}Z)?\.ndjson$", re.IGNORECASE)


def is_rejects_file(name: str) -> bool:
    """A ``<name>.rejected.ndjson`` file: NDJSON whatever format option its folder or metadata give
    (it was written by the connector, in its own format)."""
    return _REJECTS_NAME.search(name) is not None


def detect_format(name: str, source: Source, option: str | None = None) -> str:
    """The upload's format: a rejects file is NDJSON; else the ``format`` option, else the file
    extension. A ``.json`` file whose first character is ``{`` is read as NDJSON (one object per
    line is common there)."""
    if is_rejects_file(name):
        return "ndjson"
    if option:
        if option not in FORMATS:
            raise InputError(f"option format={option!r} is not supported: use one of {', '.join(FORMATS)}")
        return option
    lower = name.lower()
    ext = lower[lower.rfind("."):] if "." in lower else ""
    fmt = _EXTENSIONS.get(ext)
    if fmt is None:
        raise InputError(
            f"cannot tell the format of {name!r} from its extension: name it .ndjson, .jsonl, .json "
            "or .csv, or give the option format=ndjson|json|csv (key segment format=ndjson/)"
        )
    if fmt == "json" and _first_char(source) == "{":
        return "ndjson"
    return fmt


def _first_char(source: Source) -> str:
    with source.open(0) as stream:
        head = stream.read(4096).removeprefix(_BOM).lstrip()
    return head[:1].decode("ascii", "replace")


def read_items(source: Source, fmt: str, position: Position | None = None, *,
               max_item_bytes: int, delimiter: str = ",") -> Iterator[Item]:
    """Yield the file's items from ``position`` (default: the start of the file)."""
    position = position or Position()
    if position.offset == 0 and fmt != "csv":  # the CSV header check does it
        _check_not_utf16(source)
    if fmt == "ndjson":
        return _read_ndjson(source, position, max_item_bytes)
    if fmt == "json":
        return _read_json_array(source, position, max_item_bytes)
    if fmt == "csv":
        return _read_csv(source, position, max_item_bytes, delimiter)
    raise InputError(f"unknown format {fmt!r}: use one of {', '.join(FORMATS)}")


# -- lines -----------------------------------------------------------------------------------------
def _read_line(stream: BinaryIO, limit: int) -> tuple[bytes | None, int]:
    """One physical line (with its newline) and its size in bytes. A line longer than
    ``limit`` is consumed without being kept: (None, size)."""
    line = stream.readline(limit + 1)
    if len(line) <= limit or line.endswith(b"\n"):
        return line, len(line)
    size = len(line)
    while True:
        rest = stream.readline(_CHUNK)
        size += len(rest)
        if not rest or rest.endswith(b"\n"):
            return None, size


def _strip_bom(line: bytes, offset: int) -> tuple[bytes, int]:
    """Drop a UTF-8 byte order mark at the very start of the file."""
    if offset == 0 and line.startswith(_BOM):
        return line[len(_BOM):], len(_BOM)
    return line, 0


# -- NDJSON ----------------------------------------------------------------------------------------
def _read_ndjson(source: Source, pos: Position, max_item_bytes: int) -> Iterator[Item]:
    offset, number, line_no = pos.offset, pos.number, pos.line
    with source.open(offset) as stream:
        while True:
            raw, size = _read_line(stream, max_item_bytes)
            if size == 0:
                return
            start = offset
            offset += size
            if raw is not None:
                raw, bom = _strip_bom(raw, start)
                start += bom
            if raw is not None and not raw.strip():
                line_no += 1
                continue  # blank lines are not records
            number += 1
            item = Item(number, line_no, start, offset, line_no + 1)
            line_no += 1
            if raw is None:
                item.error = (f"line {item.line}: the line is {size:,} bytes, too large to read as one "
                              "record (setting max_record_bytes); it was not read")
                item.code = "oversize"
            else:
                _parse_json_record(raw, item, f"line {item.line}")
            yield item


class _Constant(Exception):  # noqa: N818 - a signal, not an error
    pass


def _no_constant(name: str) -> float:
    raise _Constant(name)


# json.loads, except that NaN/Infinity/-Infinity (not JSON) are signalled instead of parsed
_DECODER = json.JSONDecoder(parse_constant=_no_constant)


def _parse_json_record(raw: bytes, item: Item, where: str) -> None:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        item.error = (f"{where}: byte 0x{raw[exc.start]:02X} is not UTF-8 ({exc.reason}) at byte "
                      f"{exc.start + 1} of the line; save the file as UTF-8 (the record was not sent rather than "
                      "sent altered)")
        item.code = "encoding"
        return
    try:
        try:
            value = _DECODER.decode(text)
            constants = False
        except _Constant:  # NaN/Infinity: parsed, but the record cannot be sent as written
            value, constants = json.loads(text), True
    except ValueError as exc:
        item.error, item.code = f"{where}: not valid JSON ({exc})", "invalid_json"
        item.text = text.rstrip("\r\n")
        return
    if not isinstance(value, dict):
        item.error = f"{where}: a record must be a JSON object, not {_json_kind(value)}"
        item.code = "not_object"
        item.text = text.strip()
        return
    item.record = value
    if constants:
        item.text = text.strip()  # as written: NaN cannot be encoded again as JSON
    else:
        item.raw = raw.strip()


def _json_kind(value: object) -> str:
    return {list: "an array", str: "a string", bool: "true/false", type(None): "null"}.get(
        type(value), "a number")


# -- JSON array ------------------------------------------------------------------------------------
class _ArrayScanner:
    """A sliding window over a JSON array: ``raw_decode`` one element at a time, keeping the
    byte offset and line number of the window start."""

    def __init__(self, stream: BinaryIO, offset: int, line: int, max_item_bytes: int):
        self.stream = stream
        self.duplicates: list[str] = []  # keys written twice in one object of the element decoded last
        self.decoder = json.JSONDecoder(object_pairs_hook=self._object)
        self.text = ""  # decoded window
        self.pos = 0  # position in ``text``
        self.offset = offset  # byte offset of text[pos]
        self.line = line  # line number at text[pos]
        self.pending = b""  # bytes of an incomplete UTF-8 sequence
        self.eof = False
        self.limit = max_item_bytes

    def _object(self, pairs: list[tuple[str, object]]) -> dict:
        """A JSON object; a key written twice is noted (the record is re-encoded when sent: the
        first value would be lost without a word)."""
        value = dict(pairs)
        if len(value) != len(pairs):
            seen: set[str] = set()
            self.duplicates.extend(k for k, _ in pairs if k in seen or seen.add(k))
        return value

    def fill(self) -> bool:
        """Read one more chunk into the window; False at the end of the file."""
        if self.eof:
            return False
        chunk = self.stream.read(_CHUNK)
        if not chunk:
            self.eof = True
            if self.pending:
                raise InputError(f"byte {self.offset:,}: the file ends inside a UTF-8 character")
            return False
        data = self.pending + chunk
        try:
            decoded = data.decode("utf-8")
            self.pending = b""
        except UnicodeDecodeError as exc:
            if exc.start < len(data) - 3:
                raise InputError(
                    f"near byte {self.offset:,}: the file is not UTF-8 text ({exc.reason})") from None
            decoded = data[:exc.start].decode("utf-8")
            self.pending = data[exc.start:]
        self.text = self.text[self.pos:] + decoded
        self.pos = 0
        return True

    def advance(self, n: int) -> None:
        """Move the window start ``n`` characters on, counting bytes and lines."""
        segment = self.text[self.pos:self.pos + n]
        self.offset += len(segment.encode("utf-8"))
        self.line += segment.count("\n")
        self.pos += n

    def skip_ws(self) -> str:
        """Skip whitespace; return the next character ('' at the end of the file)."""
        while True:
            text, i = self.text, self.pos
            while i < len(text) and text[i] in _WS:
                i += 1
            if i > self.pos:
                self.advance(i - self.pos)
            if self.pos < len(self.text):
                return self.text[self.pos]
            if not self.fill():
                return ""

    def decode(self, number: int) -> tuple[object, int]:
        """Decode the value at the window start; return it and its length in characters."""
        while True:
            self.duplicates.clear()
            try:
                value, end = self.decoder.raw_decode(self.text, self.pos)
                # a number cut at the window edge would decode short: wait for more text
                if end < len(self.text) or self.eof:
                    return value, end - self.pos
            except ValueError as exc:
                if self.eof:
                    raise InputError(
                        f"record {number} (line {self.line}): the JSON array is not valid ({exc}); "
                        "fix the file or send it as NDJSON, one object per line") from None
            if len(self.text) - self.pos > self.limit * 4:
                raise InputError(
                    f"record {number} (line {self.line}): the element is over "
                    f"{self.limit * 4:,} bytes, or the JSON array is not valid from here")
            if not self.fill():
                self.eof = True


def _read_json_array(source: Source, pos: Position, max_item_bytes: int) -> Iterator[Item]:
    number = pos.number
    if pos.offset and _byte_before(source, pos.offset) == b"]":
        return  # resumed after the closing ']': the array is done
    with source.open(pos.offset) as stream:
        scan = _ArrayScanner(stream, pos.offset, pos.line, max_item_bytes)
        if pos.offset == 0:
            scan.fill()
            if scan.text.startswith("\ufeff"):
                scan.text = scan.text[1:]
                scan.offset += len(_BOM)
            first = scan.skip_ws()
            if first != "[":
                found = "an empty file" if first == "" else repr(first)
                raise InputError(f"a .json upload must be a JSON array of objects starting with '[', "
                                 f"found {found}; for one object per line name the file .ndjson")
            scan.advance(1)
            if scan.skip_ws() == "]":
                scan.advance(1)
                _expect_end(scan)
                return
        while True:
            ch = scan.skip_ws()
            if ch == "":
                raise InputError(f"line {scan.line}: the JSON array is not closed with ']'")
            number += 1
            start, line = scan.offset, scan.line
            value, length = scan.decode(number)
            text = scan.text[scan.pos:scan.pos + length]
            scan.advance(length)
            sep = scan.skip_ws()
            if sep not in (",", "]"):
                raise InputError(f"record {number} (line {scan.line}): expected ',' or ']' after the "
                                 f"element, found {sep!r}" if sep else
                                 f"line {scan.line}: the JSON array is not closed with ']'")
            scan.advance(1)
            item = Item(number, line, start, scan.offset, scan.line)
            size = len(text.encode("utf-8"))
            if scan.duplicates:
                item.error = (f"record {number} (line {line}): key {scan.duplicates[0]!r} is written twice in "
                              "one object; keep one (a JSON reader keeps only the last value)")
                item.code = "duplicate_key"
                item.text = text
            elif not isinstance(value, dict):
                item.error = f"record {number} (line {line}): a record must be a JSON object, not " \
                             f"{_json_kind(value)}"
                item.code = "not_object"
                item.text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
            elif size > max_item_bytes:
                item.error = (f"record {number} (line {line}): the record is {size:,} bytes, over the "
                              f"{max_item_bytes:,} byte limit of one record")
                item.code = "oversize"
                item.text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
            else:
                item.record = value
            if sep == "]":
                _expect_end(scan)
                yield item
                return
            if scan.skip_ws() == "]":
                raise InputError(f"record {number} (line {scan.line}): a ',' is followed by ']' "
                                 "(trailing comma): remove it")
            yield item


def _byte_before(source: Source, offset: int) -> bytes:
    """Resume offsets sit right after the ',' or ']' that ended an element."""
    with source.open(offset - 1) as stream:
        return stream.read(1)


def _expect_end(scan: _ArrayScanner) -> None:
    if scan.skip_ws() != "":
        raise InputError(f"line {scan.line}: text after the closing ']' of the JSON array")


# -- CSV -------------------------------------------------------------------------------------------
# A CSV file is read by the standard library's ``csv`` module (excel dialect, ``strict``): a quote
# inside an unquoted field is a literal character (``TV 55" screen``), a quoted field may hold the
# delimiter, doubled quotes and line breaks. ``strict`` refuses what the module would otherwise
# mangle silently (``"a"b`` read as ``ab``, a quote left open at the end of the file). The module
# is fed one physical line at a time by ``_LineFeed``, which counts bytes and lines, so each
# record's start and end offsets (the cursor) are known exactly.
_LINE_END = re.compile(rb"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+")
_UNDECODED = re.compile("[\udc80-\udcff]")  # bytes that were not UTF-8 (surrogateescape)


class _LineTooLong(Exception):  # noqa: N818 - a signal, not an error
    def __init__(self, size: int):
        super().__init__(size)
        self.size = size


class _LineFeed:
    """Physical lines of a byte stream as ``csv.reader`` wants them (text, line end kept: CR LF,
    LF or a lone CR, as with ``open(newline="")``), counting bytes and lines. A line over
    ``limit`` bytes is consumed without being kept (``_LineTooLong``); a record spanning lines
    over ``limit`` bytes in all is a quote never closed (``InputError``)."""

    def __init__(self, stream: BinaryIO, offset: int, line: int, limit: int):
        self.stream = stream
        self.offset = offset  # bytes consumed so far (absolute)
        self.line = line  # number of the next physical line
        self.limit = limit
        self.pieces: deque[bytes] = deque()
        self.begin()

    def begin(self) -> None:
        """A new record starts at the current position."""
        self.record_start, self.record_line = self.offset, self.line
        self.record_bytes = 0
        self.blank = True  # only whitespace so far
        self.bad: tuple[int, int, str, str] | None = None  # (line, byte in line, fault, why) of the first bad byte
        self.pieces_text: list[str] = []

    def __iter__(self) -> _LineFeed:
        return self

    def __next__(self) -> str:
        if not self.pieces:
            raw = self.stream.readline(self.limit + 1)
            if not raw:
                raise StopIteration
            if len(raw) > self.limit and not raw.endswith(b"\n"):
                size = len(raw)
                while True:
                    rest = self.stream.readline(_CHUNK)
                    size += len(rest)
                    if not rest or rest.endswith(b"\n"):
                        break
                self.offset += size
                self.line += 1
                raise _LineTooLong(size)
            lone_cr = raw.count(b"\r") > (1 if raw.endswith(b"\r\n") else 0)
            self.pieces.extend(_LINE_END.findall(raw) if lone_cr else (raw,))
        piece = self.pieces.popleft()
        line = self.line
        self.offset += len(piece)
        self.line += 1
        self.record_bytes += len(piece)
        if self.record_bytes > self.limit and line > self.record_line:
            raise InputError(f"line {self.record_line}: a quoted CSV field opened on this line is not closed "
                             f"within {self.limit:,} bytes (or the record is over that size): close the "
                             'quote, and double each quote inside a quoted value ("")')
        try:
            text = piece.decode("utf-8")
        except UnicodeDecodeError as exc:
            text = piece.decode("utf-8", "surrogateescape")
            if self.bad is None:
                self.bad = (line, exc.start + 1, f"byte 0x{piece[exc.start]:02X} is not UTF-8 ({exc.reason})", "")
        if "\x00" in text and self.bad is None:
            self.bad = (line, len(text[:text.index("\x00")].encode("utf-8", "surrogateescape")) + 1,
                        "a NUL byte (0x00)", "a text file holds none (was it saved as UTF-16?): ")
        if self.blank and not text.isspace():
            self.blank = False
        return text


def _check_not_utf16(source: Source) -> int:
    """Refuse a UTF-16/UTF-32 file by its byte order mark; return the size of a UTF-8 BOM (skipped)."""
    with source.open(0) as stream:
        head = stream.read(4)
    for bom, name in ((codecs.BOM_UTF32_LE, "UTF-32 LE"), (codecs.BOM_UTF32_BE, "UTF-32 BE"),
                      (codecs.BOM_UTF16_LE, "UTF-16 LE"), (codecs.BOM_UTF16_BE, "UTF-16 BE")):
        if head.startswith(bom):
            raise InputError(f"the file is {name} text (it starts with the byte order mark "
                             f"{bom.hex(' ').upper()}): save it as UTF-8 and upload it again")
    return len(_BOM) if head.startswith(_BOM) else 0


@dataclass(slots=True)
class _CsvRecord:
    row: list[str] | None  # None: refused (error set)
    start: int
    end: int
    line: int
    next_line: int
    error: str | None = None
    code: str = ""


def _csv_records(stream: BinaryIO, offset: int, line: int, limit: int,
                 delimiter: str) -> Iterator[_CsvRecord]:
    """The file's CSV records from ``offset`` (a record boundary), blank lines skipped."""
    if csv.field_size_limit() < limit:  # one field may fill the record (default 131,072 characters)
        csv.field_size_limit(limit)
    feed = _LineFeed(stream, offset, line, limit)
    reader = csv.reader(feed, delimiter=delimiter, strict=True)
    while True:
        feed.begin()
        try:
            row = next(reader)
        except StopIteration:
            return
        except _LineTooLong as exc:
            yield _CsvRecord(None, feed.record_start, feed.offset, feed.record_line, feed.line,
                             f"line {feed.record_line}: the CSV record is {exc.size:,} bytes, too large to "
                             "read as one record (setting max_record_bytes); it was not read", "oversize")
            continue
        except csv.Error as exc:
            where = feed.line - 1
            if str(exc).startswith("unexpected end of data"):
                raise InputError(f"line {feed.record_line}: a quoted CSV field opened on this line is not "
                                 'closed before the end of the file: close it, and double each quote '
                                 'inside a quoted value ("")') from None
            yield _CsvRecord(None, feed.record_start, feed.offset, feed.record_line, feed.line,
                             f"line {where}: {exc}: a quote inside a quoted value must be doubled (\"\"), "
                             f"and a closing quote must be followed by {delimiter!r} or the line end", "csv_quote")
            continue
        if feed.blank:
            continue
        record = _CsvRecord(row, feed.record_start, feed.offset, feed.record_line, feed.line)
        if feed.bad is not None:
            bad_line, byte, reason, why = feed.bad
            column = next((i for i, value in enumerate(row, 1) if _UNDECODED.search(value) or "\x00" in value), 0)
            at = f", column {column}" if column else ""
            record.row = None
            record.error = (f"line {bad_line}{at}: {reason} at byte {byte} of the line; {why}save the file as "
                            "UTF-8 (the record was not sent rather than sent altered)")
            record.code = "encoding"
        yield record


def read_csv_header(source: Source, max_item_bytes: int, delimiter: str = ",") -> tuple[list[str], Position]:
    """The CSV header (column names) and the position of the first data row. Raises InputError
    for a UTF-16/32 file, an empty file or a header that cannot name the columns."""
    bom = _check_not_utf16(source)
    with source.open(bom) as stream:
        for record in _csv_records(stream, bom, 1, max_item_bytes, delimiter):
            if record.row is None:
                raise InputError(f"the CSV header: {record.error}")
            names = [name.strip() for name in record.row]
            _check_header(names, record.line, delimiter)
            return names, Position(record.end, 0, record.next_line)
    raise InputError("the CSV file is empty: it needs a header line naming the columns")


def _check_header(names: list[str], line: int, delimiter: str = ",") -> None:
    if len(names) == 1:  # one column named "id;email;name": another separator than the one expected
        other = next((c for c in (";", "\t", "|", ",") if c != delimiter and c in names[0]), None)
        if other is not None:
            fix = ("name the file .tsv" if other == "\t" else
                   f"give the option delimiter={other} (key segment or S3 metadata)")
            raise InputError(f"line {line}: the CSV header is a single column {names[0][:80]!r}: the file "
                             f"separates columns with {other!r}, not {delimiter!r}; {fix}")
    for i, name in enumerate(names, 1):
        if not name:
            trailing = " (a trailing delimiter at the end of the line?)" if i == len(names) else ""
            raise InputError(f"line {line}: CSV header column {i} has no name{trailing}; name every column")
    seen: dict[str, int] = {}
    for i, name in enumerate(names, 1):
        if name in seen:
            raise InputError(f"line {line}: CSV header names column {name!r} twice (columns {seen[name]} "
                             f"and {i}); column names must be unique: rename one")
        seen[name] = i


def _read_csv(source: Source, pos: Position, max_item_bytes: int, delimiter: str) -> Iterator[Item]:
    header, first = read_csv_header(source, max_item_bytes, delimiter)
    if pos.offset < first.offset:
        pos = first
    number = pos.number
    with source.open(pos.offset) as stream:
        for rec in _csv_records(stream, pos.offset, pos.line, max_item_bytes, delimiter):
            number += 1
            item = Item(number, rec.line, rec.start, rec.end, rec.next_line)
            row = rec.row
            if row is None:
                item.error, item.code = rec.error, rec.code
            elif len(row) != len(header):
                extra = " (a trailing delimiter?)" if len(row) == len(header) + 1 and row[-1] == "" else ""
                item.error = (f"line {rec.line}: {len(row)} fields but the header has {len(header)}{extra}; "
                              f"quote fields that contain the delimiter {delimiter!r}")
                item.code = "csv_fields"
            else:
                # an empty cell is an absent value, not an empty string
                item.record = {name: value for name, value in zip(header, row, strict=True) if value != ""}
            yield item
