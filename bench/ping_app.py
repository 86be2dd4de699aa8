"""The real API plus one trivial JSON route, so the benchmark can show telemetry's cost alone.

Every app-level hook (request ids, metrics, fault switches, the API's own checks) runs for
``GET /api/v1/bench/ping`` exactly as for a real route; the view itself does no work.
"""
from api import create_app

app = create_app()


@app.get("/api/v1/bench/ping")
def ping():
    """A constant JSON body: what is left is the cost of the stack around it."""
    return {"pong": True}
