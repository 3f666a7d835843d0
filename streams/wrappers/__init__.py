"""Wrappers: providers built from other providers (pool, balancing, failover, metrics, debug)."""
