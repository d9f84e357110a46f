"""The generalized prosumer model and virtual-battery aggregation.

Hu et al., "Transactive Energy: an Effective Mechanism for Balancing Electric Energy System",
Proc. CSEE 2019, §3.2 and Fig. 4.
"""

from transactive.prosumer.prosumer import Member, ModelForm, Prosumer, ProsumerModel, UnitClass
from transactive.prosumer.virtual_battery import (
    TclBatteries,
    VirtualBattery,
    follow_schedule,
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
    "follow_schedule",
    "tcl_batteries_of",
    "track_power",
    "virtual_battery_of",
]
