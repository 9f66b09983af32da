"""Limits as the vendor states them: "HOPEX's 30 MB limit (31,457,280 bytes)".

A vendor documents its limits in its own units (HOPEX: "less than 30Mb", seed 002; Adobe's
streaming inlet: 1 MB per request and per record, seed 003); users compare their file with those
words, and the exact byte count removes any doubt about which megabyte is meant.
"""

from __future__ import annotations

# vendor id -> the name its users know it by
VENDOR_NAMES = {"hopex": "HOPEX", "campaign": "Adobe Campaign", "aep": "AEP", "simplemente": "simplement-e",
                "cirrus": "Cirrus Shield"}


def size_text(n: int) -> str:
    """``n`` bytes in the unit a vendor would write: 31457280 -> "30 MB", 65536 -> "64 KB",
    1000000 -> "1 MB" (decimal megabytes, as Adobe counts), otherwise "1,234 bytes"."""
    for unit, name in ((1024 * 1024 * 1024, "GB"), (1024 * 1024, "MB"), (1000 * 1000, "MB"), (1024, "KB"),
                       (1000, "KB")):
        if n >= unit and n % unit == 0:
            return f"{n // unit:,} {name}"
    return f"{n:,} bytes"


def limit_text(owner: str, n: int) -> str:
    """"HOPEX's 30 MB limit (31,457,280 bytes)"; ``owner`` is a vendor id or any other name
    (for a limit of this project's own, say so in the owner: "the trigger file")."""
    name = VENDOR_NAMES.get(owner, owner)
    words = size_text(n)
    if words.endswith(" bytes"):  # not a round figure (a setting): "AEP's limit of 999,936 bytes"
        return f"{name}'s limit of {words}"
    return f"{name}'s {words} limit ({n:,} bytes)"
