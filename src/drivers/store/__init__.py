"""Stores for readings, balances and decisions (InfluxDB)."""
