"""Concurrent writers: no 5xx from lock contention, and nothing stored is lost or duplicated."""
import threading

CONTENT = "/api/v1/content"


def test_concurrent_refreshes_and_edits_never_fail(app, auth):
    accounts = [auth.signup() for _ in range(6)]
    statuses, lock = [], threading.Lock()

    def record(status):
        with lock:
            statuses.append(status)

    def worker(account):
        client = app.test_client()
        tokens = account.tokens
        for i in range(15):
            r = client.post("/api/v1/auth/refresh",
                            headers={"Authorization": f"Bearer {tokens['refresh_token']}"})
            record(r.status_code)
            if r.status_code == 200:
                tokens = r.json
            headers = {"Authorization": f"Bearer {tokens['access_token']}"}
            created = client.post(CONTENT, json={"title": f"t{i}"}, headers=headers)
            record(created.status_code)
            url = created.headers.get("Location", f"{CONTENT}/missing")
            record(client.patch(url, json={"body": "edited"}, headers=headers).status_code)
            if i % 2:
                record(client.delete(url, headers=headers).status_code)

    threads = [threading.Thread(target=worker, args=(a,)) for a in accounts]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not any(t.is_alive() for t in threads)
    assert set(statuses) <= {200, 201, 204}, sorted(set(statuses))
    for account in accounts:
        access = auth.login(account.email, account.password)["access_token"]
        mine = app.test_client().get(f"{CONTENT}?owner=me&limit=100",
                                     headers={"Authorization": f"Bearer {access}"})
        items = mine.json["items"]
        assert sorted(i["title"] for i in items) == sorted(f"t{i}" for i in range(0, 15, 2))
        assert all(i["body"] == "edited" for i in items)
