"""The real API plus a route that raises, for tests of how crashes are counted and logged."""
from api import create_app

app = create_app()


@app.get("/api/v1/test/crash")
def crash():
    """Raise, as a bug in a view would."""
    raise RuntimeError("a bug in a view")
