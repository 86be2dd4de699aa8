"""Content CRUD: validation, ETags and preconditions, listing, filters and cursors."""
import uuid

import pytest

from api.models import utcnow
from api.pagination import encode_cursor
from tests.conftest import make_app

CONTENT = "/api/v1/content"


def _create(client, account, **fields):
    r = client.post(CONTENT, headers=account.headers, json={"title": "a title", **fields})
    assert r.status_code == 201, r.json
    return r


def test_create_returns_201_with_location_and_etag(client, auth):
    account = auth.signup()
    r = client.post(CONTENT, headers=account.headers,
                    json={"title": "Hello", "body": "World", "is_published": True})
    assert r.status_code == 201
    assert set(r.json) == {"id", "title", "body", "is_published", "owner_id",
                           "created_at", "updated_at"}
    assert r.json["owner_id"] == account.id
    assert r.headers["Location"].endswith(f"/api/v1/content/{r.json['id']}")
    assert r.headers["ETag"].startswith('"')
    got = client.get(r.headers["Location"], headers=account.headers)
    assert got.json == r.json and got.headers["ETag"] == r.headers["ETag"]


def test_create_defaults_to_an_unpublished_empty_body(client, auth):
    r = _create(client, auth.signup())
    assert r.json["is_published"] is False and r.json["body"] == ""


@pytest.mark.parametrize("body, field", [
    ({"title": ""}, "title"),
    ({"title": "x" * 201}, "title"),
    ({"title": "ok", "body": "x" * 100_001}, "body"),
    ({"title": 5}, "title"),
    ({"title": "ok", "is_published": "yes"}, "is_published"),
    ({"title": "ok", "is_published": 1}, "is_published"),
    ({"title": "ok", "owner_id": str(uuid.uuid4())}, "owner_id"),
    ({"body": "no title"}, "title"),
])
def test_create_rejects_bad_fields(client, auth, body, field):
    r = client.post(CONTENT, headers=auth.signup().headers, json=body)
    assert r.status_code == 422
    assert r.mimetype == "application/problem+json"
    assert field in [e["field"] for e in r.json["errors"]]


def test_field_bounds_are_inclusive(client, auth):
    account = auth.signup()
    _create(client, account, title="x" * 200, body="y" * 100_000)
    _create(client, account, title="x")


def test_if_none_match_answers_304(client, auth):
    account = auth.signup()
    created = _create(client, account)
    url, etag = created.headers["Location"], created.headers["ETag"]
    r = client.get(url, headers={**account.headers, "If-None-Match": etag})
    assert r.status_code == 304 and r.headers["ETag"] == etag and r.data == b""
    r = client.get(url, headers={**account.headers, "If-None-Match": '"other"'})
    assert r.status_code == 200
    r = client.get(url, headers={**account.headers, "If-None-Match": f'"other", W/{etag}'})
    assert r.status_code == 304


def test_patch_changes_fields_and_the_etag(client, auth):
    account = auth.signup()
    created = _create(client, account)
    r = client.patch(created.headers["Location"], headers=account.headers,
                     json={"title": "new", "is_published": True})
    assert r.status_code == 200
    assert r.json["title"] == "new" and r.json["is_published"] is True
    assert r.json["body"] == created.json["body"]
    assert r.headers["ETag"] != created.headers["ETag"]
    assert r.json["updated_at"] >= created.json["updated_at"]
    assert r.json["created_at"] == created.json["created_at"]


@pytest.mark.parametrize("body", [{}, {"title": "a title"}, {"title": "a title", "body": "",
                                                        "is_published": False}])
def test_patch_that_changes_nothing_keeps_the_version_and_etag(client, auth, body):
    """Other clients' If-Match must keep holding when nothing changed."""
    account = auth.signup()
    created = _create(client, account)
    url, etag = created.headers["Location"], created.headers["ETag"]
    for _ in range(3):
        r = client.patch(url, headers=account.headers, json=body)
        assert r.status_code == 200
        assert r.headers["ETag"] == etag and r.json == created.json
    r = client.patch(url, headers={**account.headers, "If-Match": etag}, json={"title": "other"})
    assert r.status_code == 200 and r.headers["ETag"] != etag


def test_patch_that_changes_nothing_still_checks_if_match(client, auth):
    account = auth.signup()
    url = _create(client, account).headers["Location"]
    r = client.patch(url, headers={**account.headers, "If-Match": '"stale"'}, json={})
    assert r.status_code == 412


def test_patch_with_a_stale_etag_is_412_and_changes_nothing(client, auth):
    account = auth.signup()
    created = _create(client, account)
    url, stale = created.headers["Location"], created.headers["ETag"]
    fresh = client.patch(url, headers={**account.headers, "If-Match": stale},
                         json={"title": "first"})
    assert fresh.status_code == 200
    r = client.patch(url, headers={**account.headers, "If-Match": stale},
                     json={"title": "second"})
    assert r.status_code == 412
    assert r.mimetype == "application/problem+json"
    assert client.get(url, headers=account.headers).json["title"] == "first"


def test_patch_rejects_bad_fields(client, auth):
    account = auth.signup()
    url = _create(client, account).headers["Location"]
    for body in ({"title": ""}, {"is_published": "true"}, {"id": str(uuid.uuid4())}):
        r = client.patch(url, headers=account.headers, json=body)
        assert r.status_code == 422, body
    assert client.get(url, headers=account.headers).json["title"] == "a title"


def test_delete_is_204_then_404(client, auth):
    account = auth.signup()
    url = _create(client, account).headers["Location"]
    assert client.delete(url, headers=account.headers).status_code == 204
    assert client.get(url, headers=account.headers).status_code == 404
    assert client.delete(url, headers=account.headers).status_code == 404


def test_delete_honours_if_match(client, auth):
    account = auth.signup()
    created = _create(client, account)
    url = created.headers["Location"]
    client.patch(url, headers=account.headers, json={"body": "changed"})
    r = client.delete(url, headers={**account.headers, "If-Match": created.headers["ETag"]})
    assert r.status_code == 412
    assert client.get(url, headers=account.headers).status_code == 200


@pytest.mark.parametrize("item_id", [str(uuid.uuid4()), "not-a-uuid", "1234", "%00"])
def test_missing_and_malformed_ids_are_404(client, auth, item_id):
    account = auth.signup()
    for method in ("GET", "PATCH", "DELETE"):
        r = client.open(f"{CONTENT}/{item_id}", method=method, headers=account.headers,
                        json={"title": "x"} if method == "PATCH" else None)
        assert r.status_code == 404, (method, r.json)
        assert r.mimetype == "application/problem+json"


def test_list_is_newest_first_with_everyones_published_and_my_drafts(client, auth):
    me, other = auth.signup(), auth.signup()
    mine = [_create(client, me, title=f"mine {i}").json["id"] for i in range(2)]
    theirs_public = _create(client, other, title="public", is_published=True).json["id"]
    _create(client, other, title="their draft")
    r = client.get(CONTENT, headers=me.headers)
    assert r.status_code == 200
    assert [i["id"] for i in r.json["items"]] == [theirs_public, mine[1], mine[0]]
    assert r.json["next_cursor"] is None


def test_list_filters(client, auth):
    me, other = auth.signup(), auth.signup()
    _create(client, me, title="My Draft")
    _create(client, me, title="my public post", is_published=True)
    _create(client, other, title="Their PUBLIC post", is_published=True)
    _create(client, other, title="100% sure_thing", is_published=True)
    _create(client, other, title="C:\\temp", is_published=True)

    def titles(query):
        r = client.get(f"{CONTENT}?{query}", headers=me.headers)
        assert r.status_code == 200, r.json
        return sorted(i["title"] for i in r.json["items"])

    assert titles("owner=me") == ["My Draft", "my public post"]
    assert titles("published=false") == ["My Draft"]
    assert titles("published=true") == ["100% sure_thing", "C:\\temp", "Their PUBLIC post",
                                        "my public post"]
    assert titles("q=PUBLIC") == ["Their PUBLIC post", "my public post"]
    assert titles("q=public&owner=me") == ["my public post"]
    # LIKE wildcards in q are literal characters
    assert titles("q=%25") == ["100% sure_thing"]
    assert titles("q=_") == ["100% sure_thing"]
    assert titles("q=%5C") == ["C:\\temp"]  # the escape character too
    assert titles("q=post&published=true&owner=me") == ["my public post"]  # every filter at once
    assert titles("q=nothing-matches") == []


@pytest.mark.parametrize("query, field", [
    ("limit=0", "limit"), ("limit=101", "limit"), ("limit=x", "limit"),
    ("owner=someone", "owner"), ("published=maybe", "published"),
    ("cursor=garbage", "cursor"),
])
def test_list_rejects_bad_parameters(client, auth, query, field):
    r = client.get(f"{CONTENT}?{query}", headers=auth.signup().headers)
    assert r.status_code == 422
    assert field in [e["field"] for e in r.json["errors"]]


def test_limit_defaults_to_20_and_accepts_1_to_100(client, auth):
    account = auth.signup()
    for i in range(21):
        _create(client, account, title=f"t{i}")
    assert len(client.get(CONTENT, headers=account.headers).json["items"]) == 20
    assert len(client.get(f"{CONTENT}?limit=1", headers=account.headers).json["items"]) == 1
    assert len(client.get(f"{CONTENT}?limit=100", headers=account.headers).json["items"]) == 21


def test_pages_cover_everything_once(client, auth):
    account = auth.signup()
    ids = [_create(client, account, title=f"t{i}").json["id"] for i in range(7)]
    seen, cursor = [], None
    while True:
        query = f"limit=3&cursor={cursor}" if cursor else "limit=3"
        page = client.get(f"{CONTENT}?{query}", headers=account.headers).json
        seen += [i["id"] for i in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == list(reversed(ids))


def test_a_tampered_cursor_is_422(client, auth):
    account = auth.signup()
    for i in range(3):
        _create(client, account, title=f"t{i}")
    cursor = client.get(f"{CONTENT}?limit=1", headers=account.headers).json["next_cursor"]
    payload, signature = cursor.split(".")
    flipped = payload[:-1] + ("A" if payload[-1] != "A" else "B")
    for bad in (f"{flipped}.{signature}", f"{payload}.{signature[::-1]}", payload, cursor + "x"):
        r = client.get(f"{CONTENT}?cursor={bad}", headers=account.headers)
        assert r.status_code == 422, bad
        assert r.json["errors"][0]["field"] == "cursor"


def test_a_cursor_signed_with_another_secret_is_422(app, client, auth):
    account = auth.signup()
    for i in range(3):
        _create(client, account, title=f"t{i}")
    other = make_app(app.config["DATABASE_URL"], JWT_SECRET_KEY="another-secret-" + "y" * 40)
    with other.test_request_context():
        foreign = encode_cursor(utcnow(), uuid.uuid4())
    r = client.get(f"{CONTENT}?cursor={foreign}", headers=account.headers)
    assert r.status_code == 422
