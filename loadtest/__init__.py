"""Vigil's Locust load scenarios: personas, one shape per scenario, k6-style thresholds."""
