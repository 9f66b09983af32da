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
import csv
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
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_LINE_END = re.compile(rb"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+")


def _column_at(text: str) -> int:
    """The 1-based column at the end of ``text`` (a record's beginning): separators outside quotes
    (a doubled quote toggles twice)."""
    column, quoted = 1, False
    for char in text:
        if char == '"':
            quoted = not quoted
        elif char == ";" and not quoted:
            column += 1
    return column


class _Lines:
    """Physical lines for ``csv.reader`` (text, line end kept; CR LF, LF or a lone CR end a line,
    as with ``open(newline="")``), with the RAW checks of one line, the record's text and the
    line end that ended it. Bounded: a line over MAX_LINE_BYTES or a record over MAX_RECORD_BYTES
    is refused."""

    def __init__(self, checker: _Checker, stream: BinaryIO):
        self.checker = checker
        self.stream = stream
        self.pieces: list[bytes] = []
        self.begin()

    def begin(self) -> None:
        self.start = self.checker.line_no + 1
        self.texts: list[str] = []
        self.size = 0

    @property
    def ending(self) -> str:
        last = self.texts[-1] if self.texts else ""
        return "\r\n" if last.endswith("\r\n") else last[-1:] if last.endswith(("\r", "\n")) else ""

    @property
    def last_columns(self) -> int:
        return _column_at("".join(self.texts))

    def record_text(self) -> str:
        """The record as written, without the line end that ended it."""
        text = "".join(self.texts)
        return text[:-len(self.ending)] if self.ending else text

    def __iter__(self) -> _Lines:
        return self

    def __next__(self) -> str:
        checker = self.checker
        if not self.pieces:
            raw = self.stream.readline(MAX_LINE_BYTES + 1)
            if not raw:
                raise StopIteration
            if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
                n = checker.line_no + 1
                raise InputError(
                    f"line {n}: longer than {MAX_LINE_BYTES >> 20} MiB without a line end: a RAW file is "
                    f"a CSV with one record per line; {_CRLF_HINT}", detail={"line": n, "rule": "line-length"})
            lone_cr = raw.count(b"\r") > (1 if raw.endswith(b"\r\n") else 0)
            self.pieces = _LINE_END.findall(raw)[::-1] if lone_cr else [raw]
        piece = self.pieces.pop()
        checker.line_no += 1
        self.size += len(piece)
        if self.size > MAX_RECORD_BYTES:
            checker._cells(self.texts[0] if self.texts else "", self.start, strict=True)  # a stray quote?
            raise violation(self.start, "quoting", "column "
                            f"{_column_at(self.texts[0] if self.texts else '')}: a double-quoted value opened "
                            f"on this line is still open {MAX_RECORD_BYTES >> 20} MiB later: close it or "
                            'double the quote inside it ("")')
        text = checker._decode_line(piece, "".join(self.texts))
        self.texts.append(text)
        return text


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
        # Record boundaries follow the CSV rules of the standard csv module (a quoted value may
        # hold ; and line breaks: a line break inside quotes is not a line end); the RAW rules are
        # then checked on each record's text. strict: a quote after a closing quote is an error,
        # not silently glued on (with the quoting rule off, the csv module's lenient reading).
        lines = _Lines(self, stream)
        # the csv module refuses a field over 128 KiB unless told otherwise (a process-wide
        # setting); this checker's own bound is MAX_RECORD_BYTES a record
        if csv.field_size_limit() < MAX_RECORD_BYTES:
            csv.field_size_limit(MAX_RECORD_BYTES)
        reader = csv.reader(lines, delimiter=";", strict=self.on("quoting"))
        while True:
            lines.begin()
            try:
                row = next(reader)
            except StopIteration:
                break
            except csv.Error as exc:
                text = lines.record_text()
                if self.header is None:  # the separator first: the likelier mistake
                    self._header(text, lines.start)
                self._cells(text, lines.start, strict=True)  # names the line and column
                raise violation(self.line_no, "quoting", f"{exc}: put strings in double quotes and double "
                                'the quotes inside them ("")') from None
            self._check_end(lines)
            self._record(lines.record_text(), lines.start, row)
        if self.header is None:
            raise InputError("the file is empty: a RAW file needs a header line and data rows",
                             detail={"line": 0, "rule": "empty"})
        if self.records == 0:
            raise InputError(
                "the file has a header line but no data row: a RAW file replaces all the data of the "
                "flow, so importing it would archive every record", detail={"line": 1, "rule": "empty"})
        return RawSummary(self.records, len(self.header), self.header, self.line_no)

    def _check_end(self, lines: _Lines) -> None:
        """The crlf rule, on the line end that ends the record (one inside a quoted value is part
        of the value, whatever it is)."""
        ending = lines.ending
        if not self.on("crlf") or ending in ("\r\n", ""):
            return
        column = lines.last_columns
        if ending == "\n":
            raise violation(self.line_no, "crlf", f"expected CRLF line end, found LF only (after column "
                            f"{column}): {_CRLF_HINT}")
        raise violation(self.line_no, "crlf", f"carriage return (CR) without line feed after column {column} "
                        f"(a lone CR ends a line): {_CRLF_HINT}")

    # -- one physical line -------------------------------------------------------------------------
    def _decode_line(self, raw: bytes, column_before: str) -> str:
        """One physical line (line end kept) as text; the bom, utf8 and line-length checks."""
        n = self.line_no
        if n == 1:
            raw = self._strip_bom(raw)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            if self.on("utf8"):
                column = _column_at(column_before + raw[:exc.start].decode("utf-8", "replace"))
                raise violation(n, "utf8", f"column {column}: invalid UTF-8 at byte {exc.start + 1} of the line "
                                f"(byte 0x{raw[exc.start]:02X}; latin-1/Windows-1252 text?): save the file "
                                "encoded as UTF-8 (without BOM)") from None
            return raw.decode("utf-8", "replace")

    def _strip_bom(self, raw: bytes) -> bytes:
        if raw.startswith(codecs.BOM_UTF8):
            if self.on("bom"):
                raise violation(1, "bom", "column 1: the file starts with a UTF-8 byte order mark (BOM): save "
                                "it as UTF-8 without BOM")
            return raw[len(codecs.BOM_UTF8):]
        if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) and self.on("utf8"):
            raise violation(1, "utf8", "column 1: the file is UTF-16 encoded (byte order mark "
                            f"{raw[:2].hex(' ').upper()}): save it as UTF-8 without BOM")
        return raw

    # -- one record --------------------------------------------------------------------------------
    def _record(self, text: str, start: int, row: list[str]) -> None:
        if not row:
            if self.on("separator"):
                raise violation(start, "separator", "column 1: empty line: remove empty lines from the file")
            return
        if self.header is None:
            self._header(text, start)
            return
        self.records += 1
        if self.on("quoting"):
            if _MARK in text:  # cannot use the fast path
                self._cells(text, start, strict=True)
            else:
                marked = _QUOTED_VALUE.sub(_MARK, text) if '"' in text else text
                if not _VALID_MARKED.fullmatch(marked):
                    self._cells(text, start, strict=True)  # raises at the exact line and column
        columns, expected = len(row), len(self.header)
        if columns != expected and self.on("separator"):
            where = (f"column {expected + 1} is one too many" if columns > expected else
                     f"column {columns + 1} is missing")
            raise violation(start, "separator", f"{columns} column{'s' if columns > 1 else ''} where the "
                            f"header has {expected} ({where}): separate columns with ; and put values "
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
            line = start + len(_LINE_BREAK.findall(text, 0, v.pos))
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
