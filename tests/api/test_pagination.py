"""Keyset pagination stays exact while other clients insert concurrently."""
import threading
import time

from tests.conftest import wait_until

CONTENT = "/api/v1/content"


def test_pages_skip_and_repeat_nothing_under_concurrent_inserts(app, client, auth):
    account = auth.signup()
    existing = set()
    for i in range(30):
        r = client.post(CONTENT, headers=account.headers,
                        json={"title": f"existing {i}", "is_published": True})
        existing.add(r.json["id"])

    # The writer shares the reader's app: peewee keeps one connection per thread per
    # database, so each thread opens and closes its own. A second app would rebind the
    # models' process-wide proxy under the reader's feet and leave a connection unclosed.
    writer = app.test_client()
    stop = threading.Event()
    inserted, errors = [], []

    def insert_forever():
        while not stop.is_set() and len(inserted) < 2000:
            r = writer.post(CONTENT, headers=account.headers,
                            json={"title": "concurrent", "is_published": True})
            (inserted if r.status_code == 201 else errors).append(r.status_code)
            time.sleep(0.01)  # a steady stream, not a flood the reader can never page past

    thread = threading.Thread(target=insert_forever)
    thread.start()
    try:
        seen, cursor, pages = [], None, 0
        while pages < 200:
            # make sure at least one insert lands between every two pages
            before = len(inserted)
            assert wait_until(lambda b=before: len(inserted) > b, timeout=10), errors[:5]
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
    assert pages >= 8, "30 items in pages of 4 take 8 pages"
    assert len(seen) == len(set(seen)), "an item was repeated"
    assert existing <= set(seen), "an item was skipped"
