"""Settlement: bills and double-entry postings for what participants owe each other.

Hu et al., "Transactive Energy: an Effective Mechanism for Balancing Electric Energy System",
Proc. CSEE 2019, Table 1 and §3.4: network users pay the network's owner for its service and its
losses. The grid's part (the losses and their allocation, :mod:`transactive.network.losses`)
stays in :mod:`transactive.network`; the tariffs, bills and postings are here, the part the
platform's settlement grows from.
"""

from transactive.settlement.network_fees import (
    FEE_PARTS,
    NetworkFeeBill,
    NetworkFees,
    NetworkTariff,
    network_fees,
)

__all__ = ["FEE_PARTS", "NetworkFeeBill", "NetworkFees", "NetworkTariff", "network_fees"]
