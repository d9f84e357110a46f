"""Device populations: vectorized physics, bidding and response (issue 3)."""
