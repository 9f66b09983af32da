"""Streaming XML helpers for the Cirrus Shield connector.

A Cirrus upload is ``<Data><Account>...</Account><Account>...</Account></Data>``: one root,
one record element per record. Two readers walk it, both with flat memory:

* ``check_document``: lxml ``iterparse`` over the whole stream (entities not expanded, no
  network, no DTD, no huge trees), clearing each record and its previous siblings. It is the
  authority on well-formedness, the root name, one record type per file, and it collects
  records missing the matching field. ``validate()`` runs it before any vendor call.
* ``RecordReader``: a small tokenizer over the raw bytes that finds where each top-level
  record starts and ends. lxml gives no byte offsets, and the import must resume from a byte
  offset (the job's cursor) without re-reading the file from the start. Each record's bytes
  are then parsed on their own by lxml (``parse_record``) with the same safe parser.

The tokenizer only needs to recognise markup boundaries, so it relies on two XML facts: a
``<`` in character data is always escaped, and markup characters are ASCII (a UTF-8
multi-byte sequence never contains a byte below 0x80). The file must therefore be UTF-8.
"""

from __future__ import annotations

import codecs
import json
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from lxml import etree

from ..errors import InputError

CHUNK_BYTES = 64 * 1024
DROPPED_CHILDREN = {"success", "errormessage"}  # response fields a re-uploaded rejects file carries
ROOT_NAME = "Data"

# One markup token at a '<'. Each alternative needs its terminator, so an incomplete token at
# the end of the buffer does not match (the reader then reads more). The start-tag branch
# consumes quoted attribute values whole ('>' may appear inside them), one char at a time so
# a failed match cannot backtrack exponentially.
_TOKEN = re.compile(
    rb"""
      <\?.*?\?>                                  # processing instruction, XML declaration
    | <!--.*?-->                                 # comment
    | <!\[CDATA\[.*?\]\]>                        # CDATA section
    | <!DOCTYPE                                  # refused: entity declarations live there
    | </[^>]*>                                   # end tag
    | <[^!?/\s>](?:[^>"']|"[^"]*"|'[^']*')*>     # start tag or empty-element tag
    """,
    re.S | re.X,
)
# A record whose children are all simple fields (text, or empty), attributes allowed: the
# common case, matched in one C-level pass. Every '<' in well-formed XML starts markup, names
# and quoted attribute values are matched exactly and quantifiers are possessive, so a match
# is the record's true extent and a failure is fast.
_N = rb"[^\s/<>!?=\"']+"
_A = rb"""(?:\s(?:[^<>"'/]|"[^"<]*"|'[^'<]*')*+)?"""
_FLAT_RECORD = re.compile(
    rb"<(?P<t>" + _N + rb")" + _A + rb">"
    rb"(?:[^<]++|<(?P<n>" + _N + rb")" + _A + rb">[^<]*+</(?P=n)\s*>|<" + _N + _A + rb"/>)*+"
    rb"</(?P=t)\s*>"
)
_NAME = re.compile(rb"</?([^\s/>]+)")
_ENCODING = re.compile(rb"""encoding\s*=\s*["']([A-Za-z0-9._:-]+)["']""")
_UTF8_NAMES = {"utf-8", "utf8", "us-ascii", "ascii"}
_BOMS_NOT_UTF8 = ((codecs.BOM_UTF32_LE, "UTF-32 LE"), (codecs.BOM_UTF32_BE, "UTF-32 BE"),
                  (codecs.BOM_UTF16_LE, "UTF-16 LE"), (codecs.BOM_UTF16_BE, "UTF-16 BE"))

_local = threading.local()


def safe_parser() -> etree.XMLParser:
    """A parser that never expands entities, loads a DTD or touches the network (one per thread:
    lxml parsers are not thread-safe)."""
    return _hardened_parser("parser")


def _answer_parser() -> etree.XMLParser:
    """``safe_parser`` that also drops the whitespace between elements: only for Cirrus Shield's
    answers, whose texts are read whitespace-normalised (records keep their layout: they are sent
    and written back as they were). libxml2 then makes no node for that whitespace (about a tenth
    of the parse, bench/RESULTS.md)."""
    return _hardened_parser("answer_parser", remove_blank_text=True)


def _hardened_parser(name: str, **extra: bool) -> etree.XMLParser:
    """This thread's parser ``name``: the hardening flags, plus ``extra``."""
    parser = getattr(_local, name, None)
    if parser is None:
        parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False,
                                 huge_tree=False, remove_comments=True, remove_pis=True, **extra)
        setattr(_local, name, parser)
    return parser


def local_name(elem: Any) -> str:
    """The tag without namespace ('' for comments and processing instructions)."""
    tag = elem.tag
    return tag[tag.rfind("}") + 1:] if isinstance(tag, str) else ""  # "{ns}name" or "name"


# ----------------------------------------------------------------------------------------------
# The byte-level record reader
# ----------------------------------------------------------------------------------------------
@dataclass
class Head:
    """What precedes the records: the root start tag as written (namespace declarations
    included: each record is parsed inside it) and the offset where the records begin."""

    root_open: bytes
    root_name: bytes
    body_offset: int


@dataclass
class RecordChunk:
    number: int  # 1-based position of the record in the file
    start: int  # absolute byte offset of its '<'
    end: int  # absolute byte offset just after its end tag
    data: bytes
    tag: str


@dataclass
class _Token:
    kind: str  # start, empty, end, pi, comment, cdata, doctype
    name: bytes
    start: int
    end: int
    text_before: bool  # non-blank character data between the previous token and this one
    raw: bytes = field(repr=False, default=b"")


class RecordReader:
    """Reads a ``<Data>`` document from a byte stream, one record at a time.

    ``offset`` is the absolute position of the stream's first byte in the file (the stream
    was opened there): every offset reported is absolute, so it can be saved as a cursor.
    The buffer holds at most one chunk plus the record being read (``max_record_bytes``).
    """

    def __init__(self, stream: BinaryIO, *, offset: int = 0, max_record_bytes: int = 1_000_000,
                 chunk_bytes: int = CHUNK_BYTES):
        self._stream = stream
        self._buf = b""
        self._base = offset  # absolute offset of _buf[0]
        self._pos = 0  # index in _buf where scanning resumes
        self._keep_from: int | None = None  # absolute offset the buffer must keep (record start)
        self._eof = False
        self._text_pending = False
        self._max = max_record_bytes
        self._chunk = chunk_bytes
        self._record_number = 0

    # -- buffering ------------------------------------------------------------------------------
    def _fill(self) -> bool:
        """Drop what is no longer needed, append the next chunk; False at the end of the stream."""
        if self._eof:
            return False
        keep = self._pos if self._keep_from is None else min(self._pos, self._keep_from - self._base)
        if keep:
            self._buf = self._buf[keep:]
            self._base += keep
            self._pos -= keep
        if self._keep_from is not None and len(self._buf) > self._max:  # unfinished, already too large
            raise self._too_large(self._record_number, self._keep_from, None)
        data = self._stream.read(self._chunk)
        if not data:
            self._eof = True
            return False
        self._buf += data
        return True

    def _check_size(self, number: int, start: int, end: int) -> None:
        """The limit is exact on the finished record: its bytes from '<' to the end tag's '>'."""
        if end - start > self._max:
            raise self._too_large(number, start, end - start)

    def _too_large(self, number: int, start: int, size: int | None) -> InputError:
        is_size = f"is {size:,} bytes," if size is not None else "is"
        return InputError(f"record {number} (from byte {start:,}) {is_size} over the {self._max:,} byte limit "
                          f"of one record (setting max_record_bytes): split it or raise the setting")

    def _slice(self, start: int, end: int) -> bytes:
        return self._buf[start - self._base:end - self._base]

    def _next_token(self) -> _Token | None:
        """The next markup token (None at the end of the stream)."""
        while True:
            lt = self._buf.find(b"<", self._pos)
            if lt < 0:
                if self._buf[self._pos:].strip():
                    self._text_pending = True
                self._pos = len(self._buf)
                if not self._fill():
                    return None
                continue
            if self._buf[self._pos:lt].strip():
                self._text_pending = True
            self._pos = lt
            match = _TOKEN.match(self._buf, lt)
            if match is None:
                if len(self._buf) - lt > self._max or not self._fill():
                    raise InputError(
                        f"the file is not well-formed XML: unreadable markup at byte {self._base + lt}"
                    )
                continue
            raw = match.group()
            self._pos = match.end()
            text_before, self._text_pending = self._text_pending, False
            return _Token(_kind(raw), _tag_name(raw), self._base + lt, self._base + match.end(),
                          text_before, raw)

    def _peek(self, n: int) -> bytes:
        while len(self._buf) - self._pos < n and self._fill():
            pass
        return self._buf[self._pos:self._pos + n]

    # -- the document -----------------------------------------------------------------------------
    def read_head(self) -> Head:
        """Read up to the root start tag; refuse what cannot be a Cirrus ``<Data>`` file."""
        start = self._peek(4)
        if not start:
            raise InputError("the file is empty (0 bytes): upload an XML <Data> file of records")
        for bom, name in _BOMS_NOT_UTF8:
            if start.startswith(bom):
                raise InputError(f"the file is {name} text (it starts with the byte order mark "
                                 f"{bom.hex(' ').upper()}): save it as UTF-8 and upload it again")
        if start.startswith(codecs.BOM_UTF8):
            self._pos += len(codecs.BOM_UTF8)
        while True:
            token = self._next_token()
            if token is None or token.text_before:
                raise InputError(
                    "the file is not XML: expected <Data> with one element per record, e.g. "
                    "<Data><Account><Name>Acme</Name></Account></Data>"
                )
            if token.kind == "pi":
                _check_declaration(token.raw)
            elif token.kind == "doctype":
                raise _doctype_error()
            elif token.kind in ("start", "empty"):
                name = token.name.decode("utf-8", "replace")
                if name.rsplit(":", 1)[-1] != ROOT_NAME:
                    raise InputError(
                        f"the root element is <{name}>, not <Data>: Cirrus Shield imports "
                        f"<Data><Object>...</Object>...</Data> files"
                    )
                if token.kind == "empty":
                    raise InputError("the file holds no record: <Data/> is empty")
                return Head(token.raw, token.name, token.end)
            elif token.kind != "comment":
                raise InputError(f"the file is not well-formed XML: unexpected markup at byte {token.start}")

    def _flat_record(self) -> tuple[int, int, bytes, str] | None:
        """Fast path: a whole record of simple fields matched by one regex in the buffer
        (None: let the token loop handle it - nested elements, comments, end of buffer...)."""
        buf = self._buf
        lt = buf.find(b"<", self._pos)
        if lt < 0 or buf[self._pos:lt].strip():
            return None
        match = _FLAT_RECORD.match(buf, lt)
        if match is None:
            return None
        self._pos = match.end()
        return self._base + lt, self._base + match.end(), match.group(), match.group("t").decode()

    def records(self, head: Head, first_number: int = 1) -> Iterator[RecordChunk]:
        """Yield each top-level record from the current position (just after the root start
        tag, or just after a record) until ``</Data>``."""
        depth = 1
        number = first_number - 1
        record_start = 0
        record_tag = b""
        while True:
            if depth == 1:
                flat = self._flat_record()
                if flat is not None:
                    number += 1
                    self._check_size(number, flat[0], flat[1])
                    yield RecordChunk(number, *flat)
                    continue
            token = self._next_token()
            if token is None:
                raise InputError("the file ends before </Data>: was the upload cut short?")
            if depth == 1 and (token.text_before or token.kind == "cdata"):
                raise InputError(
                    f"text outside any record near byte {token.start}: every child of <Data> "
                    f"must be a record element such as <Account>...</Account>"
                )
            kind = token.kind
            if kind == "doctype":
                raise _doctype_error()
            if kind == "start":
                if depth == 1:
                    number += 1
                    self._record_number = number
                    record_start, record_tag = token.start, token.name
                    self._keep_from = token.start
                depth += 1
            elif kind == "empty" and depth == 1:
                number += 1
                self._check_size(number, token.start, token.end)
                yield RecordChunk(number, token.start, token.end, token.raw, token.name.decode())
            elif kind == "end":
                depth -= 1
                if depth == 1:
                    self._check_size(number, record_start, token.end)
                    chunk = RecordChunk(number, record_start, token.end,
                                        self._slice(record_start, token.end), record_tag.decode())
                    self._keep_from = None
                    yield chunk
                elif depth == 0:
                    if token.name != head.root_name:
                        raise InputError(f"the file is not well-formed XML: </{token.name.decode()}> "
                                         f"closes <{head.root_name.decode()}> at byte {token.start}")
                    return


def _kind(raw: bytes) -> str:
    if raw.startswith(b"<?"):
        return "pi"
    if raw.startswith(b"<!--"):
        return "comment"
    if raw.startswith(b"<![CDATA["):
        return "cdata"
    if raw.startswith(b"<!"):
        return "doctype"
    if raw.startswith(b"</"):
        return "end"
    return "empty" if raw.endswith(b"/>") else "start"


def _tag_name(raw: bytes) -> bytes:
    match = _NAME.match(raw)
    return match.group(1) if match and not raw.startswith((b"<?", b"<!")) else b""


def _check_declaration(raw: bytes) -> None:
    match = _ENCODING.search(raw) if raw.startswith(b"<?xml") else None
    if match and match.group(1).decode().lower() not in _UTF8_NAMES:
        raise InputError(
            f"the file declares encoding {match.group(1).decode()}: save it as UTF-8 "
            f"(encoding=\"UTF-8\") and upload it again"
        )


def _doctype_error() -> InputError:
    return InputError(
        "the file has a <!DOCTYPE> declaration: DTDs and entity declarations are refused "
        "(they are never expanded nor fetched); remove the DOCTYPE and upload again"
    )


def parse_record(head: Head, chunk: RecordChunk) -> etree._Element:
    """Parse one record's bytes inside the root start tag (so namespace prefixes resolve)."""
    doc = head.root_open + chunk.data + b"</" + head.root_name + b">"
    try:
        root = etree.fromstring(doc, safe_parser())
    except etree.XMLSyntaxError as exc:
        raise _xml_error(exc, f"record {chunk.number} (from byte {chunk.start})") from None
    return root[0]


def parse_records(head: Head, chunks: list[RecordChunk]) -> list[etree._Element]:
    """Parse a batch of records in one lxml call (one document: the per-call setup is paid
    once, not per record). Any problem: each record is parsed on its own, so the error names
    the record at fault."""
    if len(chunks) > 1:
        doc = head.root_open + b"".join(c.data for c in chunks) + b"</" + head.root_name + b">"
        try:
            root = etree.fromstring(doc, safe_parser())
        except etree.XMLSyntaxError:
            pass
        else:
            elements = list(root)
            if len(elements) == len(chunks):
                return elements
    return [parse_record(head, chunk) for chunk in chunks]


# ----------------------------------------------------------------------------------------------
# Whole-document check (validate)
# ----------------------------------------------------------------------------------------------
@dataclass
class DocumentSummary:
    records: int
    missing_matching_field: list[int]  # record numbers (capped at max_listed)
    missing_total: int


def check_document(stream: BinaryIO, record_tag: str, matching_field: str | None = None,
                   max_listed: int = 1000) -> DocumentSummary:
    """Stream the whole file through lxml iterparse: it must be well-formed (libxml2 checks
    every byte; entities are not expanded, no DTD or network access). Counts the records
    (``record_tag`` children of the root) and lists those whose ``matching_field`` child is
    missing or empty. The root, the DOCTYPE and one record type per file are checked by
    ``RecordReader``, which sees every record's tag."""
    local = record_tag.rsplit(":", 1)[-1]
    context = etree.iterparse(
        stream, events=("end",), tag=f"{{*}}{local}", resolve_entities=False, no_network=True,
        load_dtd=False, huge_tree=False, remove_comments=True, remove_pis=True,
    )
    field_path = f"{{*}}{matching_field}" if matching_field else None
    records = 0
    missing: list[int] = []
    missing_total = 0
    try:
        for _event, elem in context:
            parent = elem.getparent()
            if parent is None or parent.getparent() is not None:
                continue  # the root itself, or a nested element with the record's name
            records += 1
            if field_path is not None:
                found = elem.find(field_path)
                if found is None or not ((found.text or "").strip() or len(found)):
                    missing_total += 1
                    if len(missing) < max_listed:
                        missing.append(records)
            # keep memory flat: drop the record's content and every record before it
            elem.clear(keep_tail=True)
            while elem.getprevious() is not None:
                del parent[0]
    except etree.XMLSyntaxError as exc:
        raise _xml_error(exc, "the file") from None
    return DocumentSummary(records, missing, missing_total)


# libxml2's bound on one text node without XML_PARSE_HUGE (huge_tree stays off: a safety limit)
PARSER_TEXT_LIMIT = 10_000_000


def _xml_error(exc: etree.XMLSyntaxError, what: str) -> InputError:
    """The InputError for a parse failure: libxml2's resource bound (a text node over 10 MB) is
    not an XML fault and is said as such, naming the setting that does not lift it."""
    last = exc.error_log.last_error if exc.error_log else None
    if last is not None and last.type_name == "ERR_RESOURCE_LIMIT":
        return InputError(
            f"{what}: a text value near line {last.line} is over {PARSER_TEXT_LIMIT:,} bytes, the XML "
            f"parser's (libxml2) bound on one text; the file is not refused as malformed, the value is too "
            f"long to parse safely, and raising the setting max_record_bytes does not lift this bound: "
            f"shorten the value or split it over several fields")
    return InputError(f"{what} is not well-formed XML: {_syntax_message(exc)}")


def _syntax_message(exc: etree.XMLSyntaxError) -> str:
    """libxml2's own words with line and column (iterparse's exception text can be a generic
    'no element found' while its error log holds the real cause)."""
    last = exc.error_log.last_error if exc.error_log else None
    msg = f"{last.message}, line {last.line}, column {last.column}" if last is not None else (exc.msg or str(exc))
    if "encoding" in msg.lower() or "utf-8" in msg.lower():
        return f"{msg} (the file must be UTF-8: save it as UTF-8 and upload it again)"
    return msg


# ----------------------------------------------------------------------------------------------
# Records: clean for sending, decorate for the rejects file
# ----------------------------------------------------------------------------------------------
def field_value(record: etree._Element, field_name: str) -> str:
    for child in record:
        if local_name(child) == field_name:
            return " ".join((child.text or "").split())
    return ""


_RESULT_FIELD = re.compile(rb"(?i)<(?:[^\s/<>:]+:)?(?:success|errormessage)[\s/>]")


def has_result_fields(data: bytes) -> bool:
    """Cheap test on a record's bytes before walking its children."""
    return _RESULT_FIELD.search(data) is not None


def drop_result_fields(record: etree._Element) -> etree._Element:
    """Remove <Success> and <ErrorMessage> children (a re-uploaded rejects file carries them);
    the whitespace layout of the remaining children is kept."""
    for child in list(record):
        if local_name(child).lower() in DROPPED_CHILDREN:
            _remove_keeping_layout(record, child)
    return record


def _remove_keeping_layout(parent: etree._Element, child: etree._Element) -> None:
    previous = child.getprevious()
    if child.getnext() is None:  # last child: its tail is the indentation of the closing tag
        if previous is not None:
            previous.tail = child.tail
        else:
            parent.text = child.tail
    parent.remove(child)  # lxml removes the child's tail with it


def record_xml(record: etree._Element) -> str:
    return etree.tostring(record, encoding="unicode", with_tail=False)


def payload_xml(records: list[etree._Element]) -> str:
    return "<Data>" + "".join(record_xml(r) for r in records) + "</Data>"


_FORM_SAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-~")
_FORM_ESCAPES = {chr(b): f"%{b:02X}" for b in range(256) if chr(b) not in _FORM_SAFE}


def form_quote(text: str) -> str:
    """``urllib.parse.quote_plus(text)``, exactly, at C speed: one ``str.replace`` per distinct
    character to escape (the standard one loops over every byte in Python: the costliest step
    of a batch). UTF-8 bytes are escaped one by one, a space becomes '+'."""
    if not text.isascii():
        text = text.encode("utf-8").decode("latin-1")  # one character per UTF-8 byte
    unsafe = set(text) - _FORM_SAFE
    if "%" in unsafe:  # first: the escapes added below hold '%'
        text = text.replace("%", "%25")
        unsafe.discard("%")
    space = " " in unsafe
    unsafe.discard(" ")
    for char in unsafe:
        text = text.replace(char, _FORM_ESCAPES[char])
    return text.replace(" ", "+") if space else text  # last: '+' itself was escaped above


_FORM_SAFE_BYTES = bytes(sorted(ord(c) for c in _FORM_SAFE))
_FORM_BYTE_ESCAPES = {b: b"%%%02X" % b for b in range(256) if chr(b) not in _FORM_SAFE}


def form_quote_bytes(data: bytes) -> bytes:
    """``quote_plus`` of UTF-8 ``data``, as bytes: what ``form_quote`` does to the decoded text,
    without decoding it (the characters to escape are found by deleting the safe ones, in C)."""
    unsafe = set(data.translate(None, _FORM_SAFE_BYTES))
    if 0x25 in unsafe:  # first: the escapes added below hold '%'
        data = data.replace(b"%", b"%25")
        unsafe.discard(0x25)
    space = 0x20 in unsafe
    unsafe.discard(0x20)
    for byte in unsafe:
        data = data.replace(bytes((byte,)), _FORM_BYTE_ESCAPES[byte])
    return data.replace(b" ", b"+") if space else data  # last: '+' itself was escaped above


def raw_payload(head: Head, chunks: list[RecordChunk]) -> bytes | None:
    """The batch as ``<Data>`` + the records' bytes as written, when they stand alone: no
    namespace declared on the root (a prefix there would not resolve) and no result fields (a
    re-uploaded rejects file: they are dropped, which needs the parsed record). ``None``
    otherwise: parse and serialize the records (``payload_xml``). The records are well-formed:
    the submit step checked the whole document (``check_document``)."""
    if b"xmlns" in head.root_open:
        return None
    body = b"".join(chunk.data for chunk in chunks)
    lowered = body.lower()  # two plain searches first: the regex only when a name is there
    if (b"success" in lowered or b"errormessage" in lowered) and _RESULT_FIELD.search(body):
        return None
    return b"<Data>" + body + b"</Data>"


def reject_xml(record: etree._Element, message: str) -> str:
    """The record as sent, plus <ErrorMessage> as its last child (in the record's namespace,
    indented like its siblings)."""
    copy = etree.fromstring(etree.tostring(record), safe_parser())
    namespace = etree.QName(copy).namespace
    error = etree.SubElement(copy, f"{{{namespace}}}ErrorMessage" if namespace else "ErrorMessage")
    error.text = message
    closing = ""
    if len(copy) > 1:
        previous = copy[-2]
        closing = previous.tail or ""
        previous.tail = copy[-3].tail if len(copy) > 2 else copy.text
        error.tail = closing
    # indent the record like its closing tag was (the whitespace before the record itself
    # belongs to the parent, not to the record's bytes)
    indent = closing.rsplit("\n", 1)[-1] if "\n" in closing and not closing.strip() else ""
    return indent + record_xml(copy)


# ----------------------------------------------------------------------------------------------
# DataAction responses
# ----------------------------------------------------------------------------------------------
@dataclass
class RecordResult:
    success: bool
    guid: str = ""
    error: str = ""


class ResponseFormatError(ValueError):
    """The answer has per-record results that cannot be read (the caller names the call)."""


def parse_results(body: bytes, content_type: str = "") -> tuple[list[RecordResult] | None, str]:
    """Per-record results of a DataAction answer, XML or JSON, in the order of the records.

    Returns (results, message): results is None when the answer carries none (then message
    is the vendor's ``Message`` text, if any). Results are matched to records by position.
    """
    text = body.lstrip()
    if not text:
        return None, ""
    if "json" in content_type.lower() or text[:1] in (b"{", b"[", b'"'):
        try:
            doc = json.loads(body)
        except ValueError:
            return None, ""
        return _json_results(doc)
    if text[:1] == b"<":
        try:
            root = etree.fromstring(text, _answer_parser())
        except etree.XMLSyntaxError:
            return None, ""
        return _xml_results(root, text)
    return None, ""


_RESULT_CHILDREN = ("success", "guid", "errormessage")


def _result_fields(elem: etree._Element) -> dict[str, str]:
    """The first <Success>, <GUID> and <ErrorMessage> children of an element (any case or
    namespace), whitespace-normalised: one pass over the children."""
    found: dict[str, str] = {}
    for child in elem:
        tag = child.tag
        if not isinstance(tag, str):
            continue
        name = tag[tag.rfind("}") + 1:].lower()
        if name in _RESULT_CHILDREN and name not in found:
            found[name] = " ".join((child.text or "").split())
    return found


# an opening tag named success, guid or errormessage in any case but Cirrus Shield's own spelling (the
# first lookahead lets every other tag fail on its first letter)
_ODD_SPELLING = re.compile(
    rb"<(?=[sSgGeE])(?!Success[\s/>]|GUID[\s/>]|ErrorMessage[\s/>])(?i:success|guid|errormessage)[\s/>]")


def _spelled_one_way(body: bytes) -> bool:
    """True when every element named success, guid or errormessage (any case) is spelled as
    Cirrus Shield writes it, without a namespace (no xmlns at all): then an XPath on those names
    finds them all."""
    return b"xmlns" not in body and _ODD_SPELLING.search(body) is None


_LOWER_NAMES = {"Success": "success", "GUID": "guid", "ErrorMessage": "errormessage"}
# the result fields of the root and of each record, in document order (a C-level union)
_RESULT_NODES = etree.XPath("Success | GUID | ErrorMessage | */Success | */GUID | */ErrorMessage")


def _found_fields(root: etree._Element) -> dict[etree._Element, dict[str, str]]:
    """``_result_fields`` of the root and of each record at once, when the answer is spelled one
    way (``_spelled_one_way``): {element: fields}, records in document order."""
    found: dict[etree._Element, dict[str, str]] = {}
    for node in _RESULT_NODES(root):
        fields = found.setdefault(node.getparent(), {})
        name = _LOWER_NAMES[node.tag]
        if name not in fields:
            text = node.text
            fields[name] = " ".join(text.split()) if text else ""
    return found


def _xml_results(root: etree._Element, body: bytes = b"") -> tuple[list[RecordResult] | None, str]:
    if body and _spelled_one_way(body):
        found = _found_fields(root)
        own = found.pop(root, {})
        records = found.values()
    else:
        own = _result_fields(root)
        records = map(_result_fields, root)
    # a single record may be answered without the <Data> wrapper
    fields = [own] if "success" in own else [f for f in records if "success" in f]
    if not fields:
        message = next((" ".join((e.text or "").split()) for e in root.iter()
                        if local_name(e).lower() == "message"), "")
        return None, message
    results = [RecordResult(_truth(f["success"]), f.get("guid", ""), f.get("errormessage", "")) for f in fields]
    return results, ""


def _json_results(doc: Any) -> tuple[list[RecordResult] | None, str]:
    found = _json_records(doc)
    if not found:
        message = ""
        if isinstance(doc, dict):
            message = next((str(v) for k, v in doc.items() if k.lower() == "message"), "")
        elif isinstance(doc, str):
            message = doc
        return None, message
    results = []
    for item in found:
        keys = {k.lower(): v for k, v in item.items()}
        error = keys.get("errormessage")
        results.append(RecordResult(_truth(keys.get("success")), str(keys.get("guid") or ""),
                                    " ".join(str(error).split()) if error else ""))
    return results, ""


def _json_records(node: Any) -> list[dict]:
    """Every object carrying a Success key, in document order. An XML-to-JSON answer gives a
    single object instead of a list when there is one record: both shapes are accepted."""
    if isinstance(node, list):
        return [item for child in node for item in _json_records(child)]
    if isinstance(node, dict):
        if any(k.lower() == "success" for k in node):
            return [node]
        return [item for child in node.values() if isinstance(child, (dict, list))
                for item in _json_records(child)]
    return []


# the words as Cirrus Shield and XML-to-JSON converters write them: looked up before normalising
_TRUTH_WORDS = {"TRUE": True, "FALSE": False, "true": True, "false": False, "True": True, "False": False,
                "1": True, "0": False}


def _truth(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value in _TRUTH_WORDS:
        return _TRUTH_WORDS[value]
    word = " ".join(str(value if value is not None else "").split()).lower()
    if word in ("true", "1"):
        return True
    if word in ("false", "0"):
        return False
    raise ResponseFormatError(f"Success is {value!r}, expected TRUE or FALSE")
