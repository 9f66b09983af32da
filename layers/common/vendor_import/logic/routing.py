"""From an S3 key (or a console input) to an import request: vendor, options, dry run, job id.

Key convention: ``inbox/<vendor>/[dry-run/][name=value/...]<path>/<file>``. A ``name=value``
segment whose name is one of the vendor's option names (case and ``-``/``_`` aside) is a
per-import option; any other ``name=value`` segment is a plain folder (``year=2026/month=11/``,
the partition layout data-lake exports write), except a near miss of an option name
(``valdate=AtEnd``), which fails with "did you mean validate?". A ``dry-run`` segment (or option
dry_run=true, or S3 metadata ``dry-run: true``) runs the local checks only. A ``target=<name>``
segment (or S3 metadata ``target``, or the console input's ``"target"``) chooses which of the
vendor's targets (named systems in its settings document) receives the import; none: ``default``.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote_plus

from ..errors import InputError
from ..scrub import neutralise
from ..settings import DEFAULT_TARGET, TARGET_NAME

INBOX = "inbox/"
_NAME_SAFE = re.compile(r"[^A-Za-z0-9_-]+")
_TRUE = {"true", "1", "yes"}
# how close a folder's name=value name must be to an option name to be taken for a typo of it:
# difflib's ratio, 2*matches/total length. 0.8 catches one dropped, added or swapped letter in
# names of 5+ letters (valdate, valiate, delimeter) and leaves short words like day, year,
# region, month clear of every option name.
NEAR_MISS_CUTOFF = 0.8


@dataclass
class ImportRequest:
    bucket: str
    key: str
    vendor: str
    options: dict[str, Any] = field(default_factory=dict)
    dry_run: bool = False
    version_id: str | None = None
    etag: str | None = None
    size: int | None = None
    target: str = DEFAULT_TARGET

    def to_input(self) -> dict[str, Any]:
        """The execution input (what a console user would type, plus what S3 told us)."""
        out: dict[str, Any] = {"bucket": self.bucket, "key": self.key}
        for name in ("version_id", "etag", "size"):
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        if self.options:
            out["options"] = self.options
        if self.dry_run:
            out["dry_run"] = True
        if self.target != DEFAULT_TARGET:
            out["target"] = self.target
        return out


def decode_event_key(raw_key: str) -> str:
    """S3 event keys are URL-encoded with + for spaces."""
    return unquote_plus(raw_key)


def vendor_of(key: str) -> str:
    if not key.startswith(INBOX):
        raise InputError(f"key {key!r} is not under {INBOX}: upload to {INBOX}<vendor>/<file>")
    parts = key[len(INBOX):].split("/")
    if len(parts) < 2 or not parts[0]:
        raise InputError(f"key {key!r} names no vendor: upload to {INBOX}<vendor>/<file>")
    return parts[0]


def option_name(name: str) -> str:
    """How option names compare: case-insensitive, ``-`` same as ``_`` (S3 metadata style)."""
    return name.strip().lower().replace("-", "_")


def options_from_key(key: str, known: set[str] | None = None) -> tuple[dict[str, str], bool]:
    """The options and the dry-run flag named by the key's folders between vendor and file name.

    ``known`` are the vendor's option names (None: the vendor's own, looked up). A segment
    ``name=value`` is an option when ``name`` is one of them; otherwise it is a folder, unless
    ``name`` is a near miss of one (difflib ratio >= NEAR_MISS_CUTOFF): InputError with the fix.
    """
    if known is None:
        known = _option_names(vendor_of(key))
    segments = key[len(INBOX):].split("/")[1:-1]
    options: dict[str, str] = {}
    dry_run = False
    for seg in segments:
        if seg.lower() in ("dry-run", "dry_run", "dryrun"):
            dry_run = True
            continue
        if "=" not in seg:
            continue
        name, _, value = seg.partition("=")
        norm = option_name(name)
        if norm == "target":  # not an option: target_from_key reads it
            continue
        if norm in known or norm == "dry_run":
            options[norm] = value
            continue
        import difflib  # only for a near miss: not on every import's path (cold start)

        close = difflib.get_close_matches(norm, sorted(known), n=1, cutoff=NEAR_MISS_CUTOFF)
        if close:
            raise InputError(
                f"key folder {seg!r} is not an option: did you mean {close[0]}? Rename the folder "
                f"{close[0]}={value} (options of this vendor: {', '.join(sorted(known))})"
            )
        # any other name=value segment is a plain folder (year=2026/, region=eu/, ...)
    return options, dry_run


def target_from_key(key: str) -> str | None:
    """The target named by a ``target=<name>`` folder between vendor and file name (the last one
    wins, as for options), None when there is none. Not validated: ``check_target`` does."""
    found = None
    for seg in key[len(INBOX):].split("/")[1:-1] if key.startswith(INBOX) else []:
        name, eq, value = seg.partition("=")
        if eq and option_name(name) == "target":
            found = value
    return found


def check_target(target: Any, where: str) -> str:
    """A target name as given (``where``: the key, metadata or console input) -> the name.
    Raises InputError when it is not 1-64 letters, digits, - or _."""
    if not isinstance(target, str) or not TARGET_NAME.fullmatch(target):
        shown = target[:80] if isinstance(target, str) else target
        raise InputError(f"target {shown!r} from the {where} is not a target name: use 1-64 letters, "
                         f"digits, - or _ (no target means {DEFAULT_TARGET})")
    return target


def choose_target(key: str, metadata: dict[str, str] | None, console: Any = None) -> str:
    """The import's target: console input > S3 metadata ``target`` > key segment > ``default``."""
    if console is not None:
        return check_target(console, "console input")
    meta = [v for k, v in (metadata or {}).items() if option_name(k) == "target"]
    if meta:
        return check_target(meta[-1], "S3 metadata")
    from_key = target_from_key(key)
    return DEFAULT_TARGET if from_key is None else check_target(from_key, "key folder target=")


def build_request(bucket: str, key: str, *, metadata: dict[str, str] | None = None,
                  console_options: dict[str, Any] | None = None, dry_run: bool | None = None,
                  version_id: str | None = None, etag: str | None = None,
                  size: int | None = None, target: str | None = None) -> ImportRequest:
    """Merge options: key segments < S3 metadata < console input (the most explicit wins); the
    target the same way (``target``: the console input's). InputError for a malformed target."""
    vendor = vendor_of(key)
    target = choose_target(key, metadata, target)
    options: dict[str, Any] = {}
    known = _option_names(vendor)
    key_options, key_dry = options_from_key(key, known)
    options.update(key_options)
    meta_dry = False
    for name, value in (metadata or {}).items():
        norm = option_name(name)
        if norm == "dry_run":
            meta_dry = value.strip().lower() in _TRUE
        elif norm in known:  # other tools add metadata of their own (rclone's mtime...): not ours
            options[norm] = value
    options.update(console_options or {})
    opt_dry = str(options.pop("dry_run", "")).lower() in _TRUE
    is_dry = bool(dry_run) if dry_run is not None else (key_dry or meta_dry or opt_dry)
    return ImportRequest(bucket, key, vendor, options, is_dry or key_dry or meta_dry or opt_dry,
                         version_id, etag, size, target)


def _option_names(vendor: str) -> set[str]:
    from ..connectors import connector_class

    try:
        return {f.name for f in connector_class(vendor).option_fields}
    except InputError:
        return set()


def execution_name(bucket: str, key: str, version: str | None) -> str:
    """A Step Functions execution name unique per object version: a duplicated S3 event maps to
    the same name, so StartExecution starts nothing new. Readable prefix, 80 chars at most."""
    digest = hashlib.sha256(f"{bucket}\n{key}\n{version or ''}".encode()).hexdigest()[:32]
    vendor = key[len(INBOX):].split("/")[0] if key.startswith(INBOX) else "unrouted"
    stem = _NAME_SAFE.sub("-", key.rsplit("/", 1)[-1]).strip("-")[:30] or "file"
    return f"{_NAME_SAFE.sub('-', vendor)[:12]}-{stem}-{digest}"[:80]


def parse_console_input(inp: Any) -> ImportRequest:
    """Validate an execution input (console start or our own submit): clear errors per field."""
    if not isinstance(inp, dict):
        raise InputError('the execution input must be a JSON object like {"bucket": "...", "key": "..."}')
    check_input_fields(inp)
    for name in ("bucket", "key"):
        value = inp.get(name)
        if value is None:
            raise InputError(
                f'input field "{name}" is missing: start with {{"bucket": "<bucket>", "key": "inbox/<vendor>/<file>"}}'
            )
        if not isinstance(value, str) or not value.strip():
            raise InputError(f'input field "{name}" must be a non-empty string')
    options = inp.get("options") or {}
    if not isinstance(options, dict):
        raise InputError('input field "options" must be an object of option names to values')
    target = inp.get("target", options.get("target"))  # "target" is an input field, not an option
    options = {k: v for k, v in options.items() if k != "target"}
    dry = inp.get("dry_run")
    if dry is not None and not isinstance(dry, bool):
        raise InputError('input field "dry_run" must be true or false')
    version_id = inp.get("version_id")
    if version_id is not None and not isinstance(version_id, str):
        raise InputError('input field "version_id" must be a string')
    req = build_request(inp["bucket"], inp["key"], console_options=options, dry_run=dry,
                        version_id=version_id, etag=inp.get("etag"), size=inp.get("size"),
                        target=target)
    # options already merged by the submit function (key + metadata) arrive in "options";
    # key segments are re-read so a console start with only bucket/key behaves like an upload.
    return req


# fields of an execution input: what a console user types, what the submit function adds, and what
# the state machine adds itself ($.job, $.error)
INPUT_FIELDS = ("bucket", "key", "version_id", "options", "dry_run", "target")
_MACHINE_FIELDS = ("etag", "size", "job", "error", "uploaded_at")  # uploaded_at: the S3 event time (vendor guard order)


def check_input_fields(inp: dict[str, Any]) -> None:
    """Refuse an unknown field (``"dryRun": true`` must not run a real import): the message names
    it and the field it most likely meant."""
    known = INPUT_FIELDS + _MACHINE_FIELDS
    for name in inp:
        if name in known:
            continue
        shown = neutralise(name)[:80]
        guess = _closest(str(name), INPUT_FIELDS)
        hint = f': did you mean "{guess}"?' if guess else ""
        raise InputError(f'unknown input field "{shown}"{hint} Input fields: {", ".join(INPUT_FIELDS)}')


def _closest(name: str, choices: tuple[str, ...]) -> str | None:
    def norm(text: str) -> str:
        return re.sub(r"[^a-z0-9]", "", text.lower())

    by_norm = {norm(c): c for c in choices}
    if norm(name) in by_norm:
        return by_norm[norm(name)]
    import difflib  # only on a bad input: kept off the cold start

    found = difflib.get_close_matches(norm(name), list(by_norm), n=1, cutoff=0.6)
    return by_norm[found[0]] if found else None
