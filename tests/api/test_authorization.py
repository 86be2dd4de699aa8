"""Object-level authorisation: user B can never read A's drafts nor change or delete A's items."""
import pytest

CONTENT = "/api/v1/content"


@pytest.fixture
def alice_and_bob(client, auth):
    alice, bob = auth.signup(), auth.signup()
    draft = client.post(CONTENT, headers=alice.headers,
                        json={"title": "alice draft", "body": "secret"})
    public = client.post(CONTENT, headers=alice.headers,
                         json={"title": "alice public", "body": "hello", "is_published": True})
    return alice, bob, draft.json, public.json


def test_bob_cannot_read_alices_draft(client, alice_and_bob):
    alice, bob, draft, _ = alice_and_bob
    r = client.get(f"{CONTENT}/{draft['id']}", headers=bob.headers)
    assert r.status_code == 404
    assert "secret" not in r.get_data(as_text=True)
    assert client.get(f"{CONTENT}/{draft['id']}", headers=alice.headers).status_code == 200


def test_bob_can_read_alices_published_item(client, alice_and_bob):
    _, bob, _, public = alice_and_bob
    r = client.get(f"{CONTENT}/{public['id']}", headers=bob.headers)
    assert r.status_code == 200 and r.json == public


@pytest.mark.parametrize("listing", ["", "?published=false", "?q=alice", "?owner=me",
                                     "?limit=100"])
def test_bob_never_lists_alices_draft(client, alice_and_bob, listing):
    _, bob, draft, _ = alice_and_bob
    items = client.get(CONTENT + listing, headers=bob.headers).json["items"]
    assert draft["id"] not in [i["id"] for i in items]


def test_owner_me_shows_only_bobs_own_items(client, alice_and_bob):
    _, bob, _, _ = alice_and_bob
    assert client.get(f"{CONTENT}?owner=me", headers=bob.headers).json["items"] == []


@pytest.mark.parametrize("method, body", [("PATCH", {"title": "pwned"}), ("DELETE", None)])
def test_bob_cannot_change_alices_items(client, alice_and_bob, method, body):
    alice, bob, draft, public = alice_and_bob
    on_public = client.open(f"{CONTENT}/{public['id']}", method=method, json=body,
                            headers=bob.headers)
    assert on_public.status_code == 403
    assert on_public.mimetype == "application/problem+json"
    on_draft = client.open(f"{CONTENT}/{draft['id']}", method=method, json=body,
                           headers=bob.headers)
    assert on_draft.status_code == 404
    # with a valid ETag in hand the answer is the same
    on_public_etag = client.open(f"{CONTENT}/{public['id']}", method=method, json=body,
                                 headers={**bob.headers, "If-Match": '"*"'})
    assert on_public_etag.status_code == 403
    for item in (draft, public):
        after = client.get(f"{CONTENT}/{item['id']}", headers=alice.headers)
        assert after.status_code == 200 and after.json == item


def test_alice_keeps_full_control(client, alice_and_bob):
    alice, _, draft, public = alice_and_bob
    assert client.patch(f"{CONTENT}/{public['id']}", headers=alice.headers,
                        json={"title": "edited"}).status_code == 200
    assert client.delete(f"{CONTENT}/{draft['id']}", headers=alice.headers).status_code == 204


def test_owner_cannot_be_reassigned(client, alice_and_bob):
    alice, bob, _, public = alice_and_bob
    r = client.patch(f"{CONTENT}/{public['id']}", headers=alice.headers,
                     json={"owner_id": bob.id})
    assert r.status_code == 422
    assert client.get(f"{CONTENT}/{public['id']}", headers=alice.headers
                      ).json["owner_id"] == alice.id
