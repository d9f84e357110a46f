"""The weakly-centralized TE platform as a service, on a real database.

Members, contracts, markets and intervals, bids, clearing with the DSO's security check,
settlement and audit.

Hu et al., "Transactive Energy: an Effective Mechanism for Balancing Electric Energy System",
Proc. CSEE 2019, §3.1.1 and Table 1. The service calls :mod:`transactive.market`,
:mod:`transactive.coordination`, :mod:`transactive.network` and :mod:`transactive.settlement`;
it never re-implements them. Its data contract is :mod:`transactive.platform.schemas`.
"""
