"""Keyset pagination stays exact while other clients insert concurrently."""
import threading

from conftest import make_app

CONTENT = "/api/v1/content"


def test_pages_skip_and_repeat_nothing_under_concurrent_inserts(app, client, auth):
    account = auth.signup()
    existing = set()
    for i in range(30):
        r = client.post(CONTENT, headers=account.headers,
                        json={"title": f"existing {i}", "is_published": True})
        existing.add(r.json["id"])

    writer_app = make_app(app.config["DATABASE_URL"])
    writer = writer_app.test_client()
    stop = threading.Event()
    inserted, errors = [], []

    def insert_forever():
        while not stop.is_set() and len(inserted) < 500:
            r = writer.post(CONTENT, headers=account.headers,
                            json={"title": "concurrent", "is_published": True})
            (inserted if r.status_code == 201 else errors).append(r.status_code)

    thread = threading.Thread(target=insert_forever)
    thread.start()
    try:
        seen, cursor, pages = [], None, 0
        while pages < 100:
            query = f"limit=4&cursor={cursor}" if cursor else "limit=4"
            page = client.get(f"{CONTENT}?{query}", headers=account.headers)
            assert page.status_code == 200, page.json
            seen += [i["id"] for i in page.json["items"]]
            pages += 1
            cursor = page.json["next_cursor"]
            if not cursor:
                break
    finally:
        stop.set()
        thread.join(timeout=30)
    assert not errors
    assert inserted, "the writer never inserted while we paged"
    assert len(seen) == len(set(seen)), "an item was repeated"
    assert existing <= set(seen), "an item was skipped"
