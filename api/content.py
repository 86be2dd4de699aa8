"""The content blueprint: CRUD with ETags and owner-only changes."""
from flask import Response, jsonify, request

from api.conditions import DOCUMENTED_PATTERN as CONDITION_PATTERN
from api.conditions import MalformedCondition, Preconditions
from api.content_store import (
    EditConflict,
    NotOwner,
    create_item,
    delete_item,
    etag_of,
    find_visible_for_token,
    update_item,
    visible_page_for_token,
)
from api.errors import problem
from api.extensions import ApiBlueprint
from api.schemas import (
    ContentCreateSchema,
    ContentPageSchema,
    ContentPatchSchema,
    ContentQuerySchema,
    ContentSchema,
    content_document,
)
from api.tokens import (
    access_token_required,
    authenticated,
    revoked_token_problem,
    token_claims,
    token_identity,
)

bp = ApiBlueprint("content", __name__, url_prefix="/api/v1/content", description="Content items")
BEARER = [{"bearer": []}]
_TAGS = {"type": "string", "pattern": CONDITION_PATTERN}
IF_MATCH = {"in": "header", "name": "If-Match", "required": False, "schema": _TAGS,
            "description": "* or a list of strong ETags the change is based on (412 unless one "
                           "is current; weak tags never match; 400 if malformed)"}
IF_NONE_MATCH = {"in": "header", "name": "If-None-Match", "required": False, "schema": _TAGS,
                 "description": "* or a list of ETags you hold (304 if one is current, "
                                "weak comparison; 400 if malformed)"}
IF_NONE_MATCH_WRITE = {**IF_NONE_MATCH,
                       "description": "* or a list of ETags (412 if the item exists and * was "
                                      "sent or one of them is current; 400 if malformed)"}
ETAG_HEADER = {"ETag": {"description": "strong validator of this representation",
                        "schema": {"type": "string"}}}


#: Where a created or changed item leads (OpenAPI links; schemathesis' stateful phase follows
#: them: create, then read, update and delete what was created).
ITEM_LINKS = {
    name: {"operationId": operation, "parameters": {"id": "$response.body#/id"}}
    for name, operation in (("ReadItem", "readContent"), ("UpdateItem", "updateContent"),
                            ("DeleteItem", "deleteContent"))
}


def _with_etag(item, status=200, location=False):
    headers = {"ETag": f'"{etag_of(item)}"'}
    if location:
        headers["Location"] = f"/api/v1/content/{item.id}"
    return jsonify(content_document(item)), status, headers


@bp.get("")
@bp.common_errors()
@bp.doc(security=BEARER, operationId="listContent", responses={200: {"links": {
    "NextPage": {"operationId": "listContent",
                 "parameters": {"cursor": "$response.body#/next_cursor"}}}}})
@access_token_required(check_session=False)  # checked in the page's own query
# An instance, not the class: webargs would build a schema for every request.
@bp.arguments(ContentQuerySchema(), location="query", as_kwargs=True)
@bp.response(200, ContentPageSchema)
@bp.alt_response(401, response="UNAUTHORIZED")
def list_content(limit, after=None, owner=None, published=None, q=None):
    """Published items of everyone plus the caller's drafts, newest first."""
    user, items, next_cursor = visible_page_for_token(
        token_claims(), limit, after, owner=owner, published=published, q=q)
    if user is None:
        return revoked_token_problem()
    authenticated(user.id)
    return jsonify({"items": [content_document(item) for item in items],
                    "next_cursor": next_cursor})


@bp.post("")
@bp.common_errors(body=True)
@bp.doc(security=BEARER, operationId="createContent", responses={201: {"links": ITEM_LINKS}})
@access_token_required()
@bp.arguments(ContentCreateSchema)
@bp.response(201, ContentSchema, headers={**ETAG_HEADER, "Location": {
    "description": "URL of the new item", "schema": {"type": "string"}}})
@bp.alt_response(401, response="UNAUTHORIZED")
def create(data):
    """Create an item owned by the caller."""
    return _with_etag(create_item(token_identity(), **data), 201, location=True)


@bp.get("/<id>")
@bp.common_errors()
@bp.doc(security=BEARER, parameters=[IF_NONE_MATCH], operationId="readContent")
@access_token_required(check_session=False)  # checked in the item's own query (_read)
@bp.response(200, ContentSchema, headers=ETAG_HEADER)
@bp.alt_response(304, response="NOT_MODIFIED")
@bp.alt_response(400, response="BAD_REQUEST")
@bp.alt_response(401, response="UNAUTHORIZED")
@bp.alt_response(404, response="NOT_FOUND")
def read(id):
    """One item; If-None-Match naming its ETag (or *) answers 304."""
    user, item = find_visible_for_token(id, token_claims())
    if user is None:
        return revoked_token_problem()
    authenticated(user.id)
    return _guarded(lambda conditions: _read(item, id, conditions))


def _read(item, item_id, conditions):
    if item is None:
        raise LookupError(item_id)
    if conditions.none_match_fails(etag_of(item)):
        return Response(status=304, headers={"ETag": f'"{etag_of(item)}"'})
    return _with_etag(item)


@bp.patch("/<id>")
@bp.common_errors(body=True)
@bp.doc(security=BEARER, parameters=[IF_MATCH, IF_NONE_MATCH_WRITE], operationId="updateContent",
        responses={200: {"links": ITEM_LINKS}})
@access_token_required()
@bp.arguments(ContentPatchSchema)
@bp.response(200, ContentSchema, headers=ETAG_HEADER)
@bp.alt_response(400, response="BAD_REQUEST")
@bp.alt_response(401, response="UNAUTHORIZED")
@bp.alt_response(403, response="FORBIDDEN")
@bp.alt_response(404, response="NOT_FOUND")
@bp.alt_response(412, response="PRECONDITION_FAILED")
def patch(data, id):
    """Change some fields (owner only); If-Match guards against lost updates."""
    return _guarded(lambda conditions: _with_etag(
        update_item(id, token_identity(), data, conditions)))


@bp.delete("/<id>")
@bp.common_errors()
@bp.doc(security=BEARER, parameters=[IF_MATCH, IF_NONE_MATCH_WRITE], operationId="deleteContent")
@access_token_required()
@bp.response(204)
@bp.alt_response(400, response="BAD_REQUEST")
@bp.alt_response(401, response="UNAUTHORIZED")
@bp.alt_response(403, response="FORBIDDEN")
@bp.alt_response(404, response="NOT_FOUND")
@bp.alt_response(412, response="PRECONDITION_FAILED")
def delete(id):
    """Delete an item (owner only)."""
    return _guarded(lambda conditions: delete_item(id, token_identity(), conditions))


def _guarded(action):
    """Run ``action(preconditions)``; map the ownership and precondition rules to answers."""
    try:
        return action(Preconditions.of(request.headers))
    except MalformedCondition as e:
        return problem(400, detail=str(e))
    except LookupError:
        return problem(404, detail="No such content item.")
    except NotOwner:
        return problem(403, detail="Only the owner may change this item.")
    except EditConflict:
        return problem(412, detail="The item does not match the request's preconditions "
                                   "(If-Match or If-None-Match).")
