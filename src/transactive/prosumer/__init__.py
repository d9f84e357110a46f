"""The generalized prosumer model and virtual-battery aggregation (paper §3.2, Fig. 4)."""

from transactive.prosumer.prosumer import Member, ModelForm, Prosumer, ProsumerModel, UnitClass
from transactive.prosumer.virtual_battery import (
    TclBatteries,
    VirtualBattery,
    tcl_batteries_of,
    track_power,
    virtual_battery_of,
)

__all__ = [
    "Member",
    "ModelForm",
    "Prosumer",
    "ProsumerModel",
    "TclBatteries",
    "UnitClass",
    "VirtualBattery",
    "tcl_batteries_of",
    "track_power",
    "virtual_battery_of",
]
