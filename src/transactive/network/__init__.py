"""The distribution network: feeders, power flow, convex OPF, DLMPs, security check, losses."""
