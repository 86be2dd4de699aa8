"""gunicorn settings for Vigil's API (the telemetry issue fills in metrics and logging hooks)."""
import os

bind = os.environ.get("VIGIL_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("VIGIL_WORKERS", "2"))
