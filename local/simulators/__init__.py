"""Vendor simulators: real HTTP servers on 127.0.0.1 that follow the seed documents."""

from __future__ import annotations

import importlib
import pkgutil

# A simulator is the module simulators/<vendor id>.py defining <Vendorid>Simulator (hopex.py ->
# HopexSimulator), the same names as the connector's; base.py holds the base class.
SIMULATORS = {m.name: f"{__name__}.{m.name}:{m.name.capitalize()}Simulator"
              for m in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name)
              if m.name.isalnum() and m.name.islower() and m.name != "base"}


def simulator_class(vendor: str):
    module_name, cls_name = SIMULATORS[vendor].split(":")
    return getattr(importlib.import_module(module_name), cls_name)
