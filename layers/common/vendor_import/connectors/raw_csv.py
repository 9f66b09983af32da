"""Checker of simplement-e "RAW" CSV files (altazion-aide, edi/formats-standards.md).

The vendor warns that a file in any other format is refused and may corrupt the database, so
the upload is checked before anything is sent. The rules, each with a name that the
``rules_off`` setting can turn off:

* ``separator``  columns separated by ``;``: the header has more than one column and every row
                 has as many columns as the header; no empty lines
* ``quoting``    strings in double quotes, embedded quotes doubled (``""``); an unquoted value
                 must be empty, a number (``-12.5``), a boolean (true/false) or an RFC 3339 date
* ``utf8``       valid UTF-8 (a UTF-16 file is refused under this rule too)
* ``bom``        no UTF-8 byte order mark at the start
* ``crlf``       every line ends with CR LF (the last line may have no line end)
* ``header``     a header line comes first (heuristic: no empty name, no value that looks like
                 data: number, boolean or date)

Always checked, whatever ``rules_off`` says: the file has a header and at least one data row
(a RAW file fully replaces the flow's data: an empty one would archive every record), and no
line is longer than ``MAX_LINE_BYTES`` (a file with no line end at all is not a RAW CSV).

The stream is read line by line, so memory stays bounded (one record of at most
``MAX_RECORD_BYTES``) whatever the file size. A valid record is checked by one regular
expression; only a failing one is split field by field to name the line and column.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import BinaryIO

from ..errors import InputError

RULES = ("separator", "quoting", "utf8", "bom", "crlf", "header")

MAX_LINE_BYTES = 1 << 20  # 1 MiB per physical line
MAX_RECORD_BYTES = 4 << 20  # 4 MiB per record (a quoted value may span lines)

_QUOTED = r'"[^"]*(?:""[^"]*)*"'
_NUMBER = r"[-+]?\d+(?:\.\d+)?"
_BOOLEAN = r"true|false|True|False|TRUE|FALSE"  # not (?i:...): it makes the regex 2x slower
_DATE = r"\d{4}-\d{2}-\d{2}(?:[Tt ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:[Zz]|[-+]\d{2}:?\d{2})?)?"
_BARE = f"(?:{_NUMBER}|{_BOOLEAN}|{_DATE})"
# A record whose quoted values were replaced by _MARK: checked by one regex (the fast path)
_MARK = "\x00"
_FIELD = f"(?:{_MARK}|{_BARE})?"
_VALID_MARKED = re.compile(f"{_FIELD}(?:;{_FIELD})*")
_BARE_VALUE = re.compile(_BARE)
_QUOTED_VALUE = re.compile(_QUOTED)
_TOKEN = re.compile(r'"(?P<quoted>[^"]*(?:""[^"]*)*)"|(?P<bare>[^;"]*)')
_DECIMAL_COMMA = re.compile(r"[-+]?\d+,\d+")

_CRLF_HINT = "save the file with Windows (CRLF) line ends"


@dataclass
class RawSummary:
    """What the check learnt about a valid file."""

    records: int  # data rows (not counting the header; a row may span lines)
    columns: int
    header: list[str] = field(default_factory=list)
    lines: int = 0  # physical lines


@dataclass
class _Cell:
    value: str
    quoted: bool
    pos: int  # offset in the record text


class _Violation(Exception):
    def __init__(self, pos: int, column: int, text: str):
        super().__init__(text)
        self.pos, self.column, self.text = pos, column, text


def violation(line: int, rule: str, text: str) -> InputError:
    """The error a user reads: where, what rule, how to fix."""
    return InputError(f"line {line}: {text} (rule {rule})", detail={"line": line, "rule": rule})


def check_raw(stream: BinaryIO, rules_off: Iterable[str] = ()) -> RawSummary:
    """Check a RAW file; raise InputError naming the line and the rule of the first violation."""
    return _Checker(frozenset(rules_off)).run(stream)


class _Checker:
    def __init__(self, rules_off: frozenset[str]):
        unknown = sorted(rules_off - set(RULES))
        if unknown:
            raise ValueError(f"unknown RAW rule {unknown[0]!r}")
        self.off = rules_off
        self.header: list[str] | None = None
        self.records = 0
        self.line_no = 0

    def on(self, rule: str) -> bool:
        return rule not in self.off

    def run(self, stream: BinaryIO) -> RawSummary:
        pending: list[str] = []  # physical lines of a record whose quoted value is still open
        pending_start = pending_bytes = pending_quotes = 0
        while True:
            raw = stream.readline(MAX_LINE_BYTES + 1)
            if not raw:
                break
            self.line_no += 1
            text = self._decode_line(raw)
            if pending:
                pending.append(text)
                pending_bytes += len(raw)
                pending_quotes += text.count('"')
            else:
                pending, pending_start, pending_bytes = [text], self.line_no, len(raw)
                pending_quotes = text.count('"')
            # an odd number of quotes: a quoted value goes on to the next line (embedded line end)
            if self.on("quoting") and pending_quotes % 2:
                if pending_bytes > MAX_RECORD_BYTES:
                    self._cells(pending[0], pending_start, strict=True)  # a stray quote on that line?
                    raise violation(pending_start, "quoting", "a double-quoted value opened here is "
                                    f"still open {MAX_RECORD_BYTES >> 20} MiB later: close it or "
                                    'double the quote inside it ("")')
                continue
            self._record("\r\n".join(pending), pending_start)
            pending = []
        if pending:
            self._cells(pending[0], pending_start, strict=True)  # a stray quote on that line?
            raise violation(pending_start, "quoting", "a double-quoted value opened here is never "
                            'closed: close it, or double the quote inside it ("")')
        if self.header is None:
            raise InputError("the file is empty: a RAW file needs a header line and data rows",
                             detail={"line": 0, "rule": "empty"})
        if self.records == 0:
            raise InputError(
                "the file has a header line but no data row: a RAW file replaces all the data of the "
                "flow, so importing it would archive every record", detail={"line": 1, "rule": "empty"})
        return RawSummary(self.records, len(self.header), self.header, self.line_no)

    # -- one physical line -------------------------------------------------------------------------
    def _decode_line(self, raw: bytes) -> str:
        n = self.line_no
        if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
            raise InputError(
                f"line {n}: longer than {MAX_LINE_BYTES >> 20} MiB without a line end: a RAW file is "
                f"a CSV with one record per line; {_CRLF_HINT}", detail={"line": n, "rule": "line-length"})
        if n == 1:
            raw = self._strip_bom(raw)
        if raw.endswith(b"\r\n"):
            body, ending = raw[:-2], "CRLF"
        elif raw.endswith(b"\n"):
            body, ending = raw[:-1], "LF"
        else:
            body, ending = raw, None  # the last line may go without a line end
        if self.on("crlf"):
            if ending == "LF":
                raise violation(n, "crlf", f"expected CRLF line end, found LF only: {_CRLF_HINT}")
            if b"\r" in body:
                raise violation(n, "crlf", f"carriage return (CR) without line feed: {_CRLF_HINT}")
        try:
            return body.decode("utf-8")
        except UnicodeDecodeError as exc:
            if self.on("utf8"):
                raise violation(n, "utf8", f"invalid UTF-8 at byte {exc.start + 1} of the line: save "
                                "the file encoded as UTF-8 (without BOM)") from None
            return body.decode("utf-8", "replace")

    def _strip_bom(self, raw: bytes) -> bytes:
        if raw.startswith(codecs.BOM_UTF8):
            if self.on("bom"):
                raise violation(1, "bom", "the file starts with a UTF-8 byte order mark (BOM): save it "
                                "as UTF-8 without BOM")
            return raw[len(codecs.BOM_UTF8):]
        if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) and self.on("utf8"):
            raise violation(1, "utf8", "the file is UTF-16 encoded: save it as UTF-8 without BOM")
        return raw

    # -- one record --------------------------------------------------------------------------------
    def _record(self, text: str, start: int) -> None:
        if not text:
            if self.on("separator"):
                raise violation(start, "separator", "empty line: remove empty lines from the file")
            return
        if self.header is None:
            self._header(text, start)
            return
        self.records += 1
        if _MARK in text:  # cannot use the fast path
            columns = len(self._cells(text, start, strict=self.on("quoting")))
        else:
            marked = _QUOTED_VALUE.sub(_MARK, text) if '"' in text else text
            if self.on("quoting") and not _VALID_MARKED.fullmatch(marked):
                self._cells(text, start, strict=True)  # raises at the exact line and column
            columns = marked.count(";") + 1
        expected = len(self.header)
        if columns != expected and self.on("separator"):
            raise violation(start, "separator", f"{columns} column{'s' if columns > 1 else ''} where the "
                            f"header has {expected}: separate columns with ; and put values "
                            "containing ; in double quotes")

    def _header(self, text: str, start: int) -> None:
        cells = self._cells(text, start, strict=False)  # the separator first: the likelier mistake
        if len(cells) < 2 and self.on("separator"):
            found = next((f" (found {name})" for sep, name in ((",", "commas"), ("\t", "tabs"),
                                                               ("|", "pipes")) if sep in text), "")
            raise violation(start, "separator", "the header line has a single column: RAW files "
                            f"separate columns with ;{found}")
        if self.on("quoting"):
            cells = self._cells(text, start, strict=True)
        if self.on("header"):
            for i, cell in enumerate(cells, 1):
                if not cell.value.strip():
                    raise violation(start, "header", f"column {i} of the first line is empty: the "
                                    "first line must be the header line with the column names")
                if not cell.quoted and _BARE_VALUE.fullmatch(cell.value):
                    raise violation(start, "header", f"the first line looks like data (column {i} is "
                                    f"{cell.value!r}): start the file with the header line")
        self.header = [c.value for c in cells]

    def _cells(self, text: str, start: int, *, strict: bool) -> list[_Cell]:
        """Split a record into cells; ``strict`` raises on the first quoting violation."""
        try:
            return _split(text, strict=strict)
        except _Violation as v:
            line = start + text.count("\n", 0, v.pos)
            raise violation(line, "quoting", f"column {v.column}: {v.text}") from None


def _split(text: str, *, strict: bool) -> list[_Cell]:
    cells: list[_Cell] = []
    pos = 0
    while True:
        column = len(cells) + 1
        m = _TOKEN.match(text, pos)
        quoted = m.group("quoted") is not None
        value = m.group("quoted").replace('""', '"') if quoted else m.group("bare")
        end = m.end()
        if strict:
            _check_cell(text, pos, end, quoted, value, column)
        elif end < len(text) and text[end] != ";":  # lenient: this record's quotes are not RAW
            return [_Cell(v, v.startswith('"'), 0) for v in text.split(";")]
        cells.append(_Cell(value, quoted, pos))
        if end >= len(text):
            return cells
        pos = end + 1


def _check_cell(text: str, pos: int, end: int, quoted: bool, value: str, column: int) -> None:
    if end < len(text) and text[end] != ";":
        if quoted:
            raise _Violation(end, column, "a double quote inside a quoted value must be doubled "
                             '(""), and the closing quote must be followed by ; or the line end')
        if pos == end:  # the value starts with a quote that never closes on this record
            raise _Violation(pos, column, "the double-quoted value is not closed")
        raise _Violation(end, column, "double quote inside an unquoted value: put the whole value "
                         'in double quotes and double the quote inside it ("")')
    if not quoted and value and not _BARE_VALUE.fullmatch(value):
        shown = value if len(value) <= 40 else value[:40] + "..."
        hint = " (decimal numbers use a point: 12.5)" if _DECIMAL_COMMA.fullmatch(value) else ""
        raise _Violation(pos, column, f"text value {shown!r} is not in double quotes{hint}: put "
                         "strings in double quotes")
