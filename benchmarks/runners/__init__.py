"""One runner per system family; each runs one (system, workload) in its own process (see harness.py)."""
