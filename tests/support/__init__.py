"""Reusable test support: a PostgreSQL server, a controllable clock, actors, scenarios."""
