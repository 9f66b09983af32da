"""AWS size limits every output stays within, and how long texts are cut to fit.

* Step Functions: a task's output (the state's data) is at most 262,144 bytes of UTF-8 JSON
  (https://docs.aws.amazon.com/step-functions/latest/apireference/API_TaskSucceededEventDetails.html,
  and the service quotas page https://docs.aws.amazon.com/step-functions/latest/dg/service-quotas.html).
* DynamoDB: an item is at most 400 KB, attribute names and values included
  (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/ServiceQuotas.html).
* SNS: body and message attributes together are at most 256 KiB (262,144 bytes) on a topic with
  the default MaximumMessageSize; above it Publish answers InvalidParameter
  (https://docs.aws.amazon.com/sns/latest/dg/large-message-payloads.html).

A vendor text (a job's failure reason, an error message list) can be any length: it is cut with
a marker saying how much was cut and where the whole text is (the S3 status JSON, which has no
such limit). Identifiers are never cut: only the longest strings are, longest first.
"""

from __future__ import annotations

import json
import re
from typing import Any

STATE_MAX_BYTES = 262_144
DYNAMODB_ITEM_MAX_BYTES = 400 * 1024
SNS_MAX_BYTES = 262_144

# budgets with room for what is added around the cut object (execution input, other attributes)
STATE_JOB_BUDGET = 96 * 1024  # the job payload kept in $.job (next to the execution input)
RECORD_BUDGET = 160 * 1024  # the status record in DynamoDB and as Finalize's state output
STATE_TEXT_CHARS = 16_000  # one message carried in the state

MARKER_TAIL = "characters cut: the whole text is in the status JSON in S3]"
MARKER = " [... {n:,} " + MARKER_TAIL
_MIN_KEEP = 200


_MARKER_AT_END = re.compile(r" \[\.\.\. ([\d,]+) characters cut: the whole text is in the status JSON in S3\]$")


def cut(text: str, max_chars: int) -> str:
    """``text`` if it has at most ``max_chars`` characters, else its start and a marker saying how
    many characters of the original were cut (a text cut before is cut again from its start)."""
    if len(text) <= max_chars:
        return text
    already = 0
    found = _MARKER_AT_END.search(text)
    if found:
        already = int(found.group(1).replace(",", ""))
        text = text[: found.start()]
    keep = min(len(text), max(_MIN_KEEP, max_chars - len(MARKER) - 10))
    return text[:keep] + MARKER.format(n=len(text) - keep + already)


def json_bytes(obj: Any) -> int:
    """Bytes of ``obj`` as compact UTF-8 JSON (how Step Functions and DynamoDB count)."""
    return len(json.dumps(obj, default=str, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))


def shrink(obj: Any, max_bytes: int, size=json_bytes, *, keep: frozenset[str] = frozenset()) -> Any:
    """A copy of the JSON-like ``obj`` whose ``size`` is at most ``max_bytes``: its longest strings
    are cut (with the marker), longest first. Keys in ``keep`` (at any depth) are never cut.
    Raises ValueError if no string is left long enough to cut (the caller's bug, said loudly)."""
    obj = json.loads(json.dumps(obj, default=str))
    for _ in range(64):  # each round cuts the longest string by at least the excess
        total = size(obj)
        if total <= max_bytes:
            return obj
        holder, key, text = _longest(obj, keep)
        if text is None or len(text) <= _MIN_KEEP + len(MARKER):
            break
        excess = total - max_bytes
        # a character is at least one byte (up to 12 once escaped twice): cut at least the excess
        target = max(_MIN_KEEP + len(MARKER), min(len(text) // 2, len(text) - excess - len(MARKER)))
        holder[key] = cut(text, target)
    raise ValueError(f"cannot fit the object in {max_bytes} bytes by cutting its texts")


def _longest(obj: Any, keep: frozenset[str]) -> tuple[Any, Any, str | None]:
    best: tuple[Any, Any, str | None] = (None, None, None)
    stack = [obj]
    while stack:
        node = stack.pop()
        items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
        for k, v in items:
            if isinstance(k, str) and k in keep:
                continue
            if isinstance(v, str):
                if best[2] is None or len(v) > len(best[2]):
                    best = (node, k, v)
            elif isinstance(v, (dict, list)):
                stack.append(v)
    return best
