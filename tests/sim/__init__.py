"""Tier 2: deterministic simulation of Raft clusters (see ruaft/testing/sim.py)."""
