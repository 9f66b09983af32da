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


def start_targets(vendor: str, names: list[str] | tuple[str, ...]) -> dict[str, object]:
    """One started simulator per target name, each on its own port (and, where the simulator class
    has ``for_target``, with credentials of its own): two systems of one vendor served at once."""
    cls = simulator_class(vendor)
    make = getattr(cls, "for_target", None)
    started: dict[str, object] = {}
    try:
        for name in names:
            started[name] = (make(name) if make else cls()).start()
    except BaseException:
        for sim in started.values():
            sim.stop()
        raise
    return started


def targets_document(vendor: str, sims: dict[str, object]) -> dict:
    """The multi-target settings document {"vendor", "targets": {name: settings}} of simulators
    started by ``start_targets`` (each target's settings point at its own simulator)."""
    return {"vendor": vendor, "targets": {name: {k: v for k, v in sim.settings().items() if k != "vendor"}
                                          for name, sim in sims.items()}}
