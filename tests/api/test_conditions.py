"""If-Match and If-None-Match (RFC 9110 section 13) on content reads and writes."""
import pytest

from api.conditions import ANY, MalformedCondition, parse_entity_tags

CONTENT = "/api/v1/content"


@pytest.mark.parametrize("value, tags", [
    ("*", ANY),
    (' * ', ANY),
    ('"a"', [(False, "a")]),
    ('W/"a"', [(True, "a")]),
    ('"a", W/"b" ,"c"', [(False, "a"), (True, "b"), (False, "c")]),
    ('"a",,  ,"b"', [(False, "a"), (False, "b")]),
    ('"with,comma"', [(False, "with,comma")]),
    ('""', [(False, "")]),
])
def test_entity_tag_lists_parse(value, tags):
    assert parse_entity_tags("If-Match", value) == tags


@pytest.mark.parametrize("value", ["", " ", ",", "abc", '"a" "b"', '"a', 'w/"a"', 'W/ "a"',
                                   '*, "a"', '"a", *', '"sp ace"', '"a"x', 'W/a'])
def test_malformed_entity_tag_lists_are_refused(value):
    with pytest.raises(MalformedCondition):
        parse_entity_tags("If-Match", value)


@pytest.fixture
def item(client, auth):
    """(account, url, etag) of a fresh item of a fresh account."""
    account = auth.signup()
    r = client.post(CONTENT, headers=account.headers, json={"title": "guarded"})
    return account, r.headers["Location"], r.headers["ETag"]


def _write(client, account, url, method, **headers):
    return client.open(url, method=method, headers={**account.headers, **headers},
                       json={"title": "changed"} if method == "PATCH" else None)


def _unchanged(client, account, url, etag):
    r = client.get(url, headers=account.headers)
    return r.status_code == 200 and r.headers["ETag"] == etag


@pytest.mark.parametrize("method", ["PATCH", "DELETE"])
def test_if_match_list_means_any_of_these(client, item, method):
    account, url, etag = item
    r = _write(client, account, url, method, **{"If-Match": f'"stale", {etag}'})
    assert r.status_code in (200, 204)


@pytest.mark.parametrize("method", ["PATCH", "DELETE"])
@pytest.mark.parametrize("if_match", ['"stale"', '"stale", "older"', "W/{etag}",
                                      '"stale", W/{etag}'])
def test_if_match_without_a_strong_match_is_412(client, item, method, if_match):
    account, url, etag = item
    r = _write(client, account, url, method, **{"If-Match": if_match.format(etag=etag)})
    assert r.status_code == 412 and r.mimetype == "application/problem+json"
    assert _unchanged(client, account, url, etag)


@pytest.mark.parametrize("method", ["PATCH", "DELETE"])
@pytest.mark.parametrize("header", ["If-Match", "If-None-Match"])
@pytest.mark.parametrize("value", ["{bare}", "", "garbage", '*, "{bare}"', '"{bare}" junk'])
def test_malformed_conditions_are_400_never_an_unconditional_write(client, item, method,
                                                                   header, value):
    account, url, etag = item
    r = _write(client, account, url, method, **{header: value.format(bare=etag.strip('"'))})
    assert r.status_code == 400 and r.mimetype == "application/problem+json"
    assert header in r.json["detail"]
    assert _unchanged(client, account, url, etag)


@pytest.mark.parametrize("method", ["PATCH", "DELETE"])
def test_if_match_star_writes_when_the_item_exists(client, item, method):
    account, url, _ = item
    assert _write(client, account, url, method, **{"If-Match": "*"}).status_code in (200, 204)


@pytest.mark.parametrize("method", ["PATCH", "DELETE"])
@pytest.mark.parametrize("if_none_match", ["*", "{etag}", 'W/{etag}', '"other", {etag}'])
def test_if_none_match_on_a_write_is_412_when_it_matches(client, item, method, if_none_match):
    account, url, etag = item
    r = _write(client, account, url, method,
               **{"If-None-Match": if_none_match.format(etag=etag)})
    assert r.status_code == 412
    assert _unchanged(client, account, url, etag)


@pytest.mark.parametrize("method", ["PATCH", "DELETE"])
def test_if_none_match_on_a_write_holds_for_other_tags(client, item, method):
    account, url, _ = item
    r = _write(client, account, url, method, **{"If-None-Match": '"other", W/"older"'})
    assert r.status_code in (200, 204)


def test_if_none_match_star_on_a_read_is_304(client, item):
    account, url, etag = item
    r = client.get(url, headers={**account.headers, "If-None-Match": "*"})
    assert r.status_code == 304 and r.headers["ETag"] == etag


def test_malformed_if_none_match_on_a_read_is_400(client, item):
    account, url, _ = item
    r = client.get(url, headers={**account.headers, "If-None-Match": "nonsense"})
    assert r.status_code == 400 and r.mimetype == "application/problem+json"


def test_missing_item_is_404_before_any_precondition(client, item):
    account, url, _ = item
    client.delete(url, headers=account.headers)
    for method in ("PATCH", "DELETE"):
        assert _write(client, account, url, method, **{"If-Match": "*"}).status_code == 404
