"""Vendor simulators: real HTTP servers on 127.0.0.1 that follow the seed documents."""

from __future__ import annotations

import importlib

# vendor id -> "module:Class"
SIMULATORS = {
    "hopex": "local.simulators.hopex:HopexSimulator",
    "campaign": "local.simulators.campaign:CampaignSimulator",
    "aep": "local.simulators.aep:AepSimulator",
    "simplemente": "local.simulators.simplemente:SimplementeSimulator",
    "cirrus": "local.simulators.cirrus:CirrusSimulator",
}


def simulator_class(vendor: str):
    module_name, cls_name = SIMULATORS[vendor].split(":")
    return getattr(importlib.import_module(module_name), cls_name)
