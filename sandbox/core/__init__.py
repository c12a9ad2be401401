"""What every emulated service shares: clock, faults, request log, TLS, tokens, scenario, world."""
