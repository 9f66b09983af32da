"""Registry of connectors. Modules are imported lazily so a vendor function loads only its own
connector (and its dependencies: lxml for XML vendors only) - cold start matters."""

from __future__ import annotations

import importlib
import os
from typing import Any

from ..errors import InputError, SettingsError
from ..settings import DEFAULT_TARGET, target_settings, validate_fields, validate_settings

# A connector is the module connectors/<vendor id>.py (lowercase letters and digits) defining
# <Vendorid>Connector, e.g. hopex.py -> HopexConnector; helper modules carry an underscore
# (adobe_ims, cirrus_xml...) and base.py holds the base class. Found by name, nothing imported.
_NOT_CONNECTORS = {"base"}


def _discover() -> tuple[str, ...]:
    # one directory listing (pkgutil.iter_modules costs an import and a stat per entry: cold start)
    names = {entry.name[:-3] for path in __path__ for entry in os.scandir(path) if entry.name.endswith(".py")}
    return tuple(sorted(n for n in names if n.isalnum() and n.islower() and n not in _NOT_CONNECTORS))


VENDORS = _discover()
CONNECTORS: dict[str, str] = {v: f"{__name__}.{v}:{v.capitalize()}Connector" for v in VENDORS}


def connector_class(vendor: str):
    target = CONNECTORS.get(vendor)
    if target is None:
        raise InputError(
            f"unknown vendor {vendor!r}: the key must start with inbox/<vendor>/ where vendor is "
            f"one of {', '.join(VENDORS)}"
        )
    module_name, cls_name = target.split(":")
    return getattr(importlib.import_module(module_name), cls_name)


def load_settings(vendor: str, doc: Any, target: str = DEFAULT_TARGET) -> dict[str, Any]:
    """The validated settings of one target of ``vendor`` (``doc``: JSON text or dict, single- or
    multi-target form, see ``settings.target_settings``). InputError for an unknown target."""
    cls = connector_class(vendor)
    doc = target_settings(doc, vendor, target)
    if cls.default_base_url and isinstance(doc, dict) and not doc.get("base_url"):
        doc = {**doc, "base_url": cls.default_base_url}
    return validate_settings(doc, vendor, cls.settings_fields)


def validate_options(vendor: str, options: dict[str, Any]) -> dict[str, Any]:
    """Validate per-import options against the connector's declared option fields."""
    cls = connector_class(vendor)
    fields = {f.name: f for f in cls.option_fields}
    coerced = {k: _coerce(v, fields[k].type) if k in fields else v for k, v in (options or {}).items()}
    try:
        return validate_fields(coerced, cls.option_fields, "option ")
    except SettingsError as exc:  # an option is the user's input, not the settings
        raise InputError(exc.message.replace("setting option ", "option ")) from None


def build_connector(vendor: str, settings: dict[str, Any], session=None):
    return connector_class(vendor)(settings, session=session)


def _coerce(value: Any, typ) -> Any:
    """Options from key segments and S3 metadata arrive as strings: read them as their type."""
    if not isinstance(value, str):
        return value
    types = typ if isinstance(typ, tuple) else (typ,)
    if bool in types:
        low = value.strip().lower()
        if low in ("true", "1", "yes"):
            return True
        if low in ("false", "0", "no"):
            return False
    if int in types:
        try:
            return int(value)
        except ValueError:
            pass
    if float in types:
        try:
            return float(value)
        except ValueError:
            pass
    return value
