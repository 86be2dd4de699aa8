"""marshmallow schemas: they validate requests and generate the OpenAPI document."""
from marshmallow import Schema, ValidationError, fields, post_load, validate

from api.emails import DOCUMENTED_PATTERN as EMAIL_PATTERN
from api.emails import MAX_LENGTH as EMAIL_MAX_LENGTH
from api.emails import InvalidEmail, normalise_email
from api.pagination import CURSOR_PATTERN, BadCursor, decode_cursor

#: Password bounds from the contract.
PASSWORD_LENGTH = validate.Length(min=12, max=128)


#: The document's statement of Text's rule: no NUL anywhere.
NO_NUL = "^[^\\u0000]*$"


class Text(fields.String):
    """A string a database can store: valid UTF-8 (no lone surrogates) and no NUL."""

    def __init__(self, *args, **kwargs):
        metadata = kwargs.pop("metadata", {})
        super().__init__(*args, metadata={"pattern": NO_NUL, **metadata}, **kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        value = super()._deserialize(value, attr, data, **kwargs)
        if "\x00" in value:
            raise ValidationError("Must not contain NUL (\\u0000) characters.")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as e:
            # JSON allows "\ud800"; no database driver can encode it
            raise ValidationError("Must be valid Unicode (no lone surrogates).") from e
        return value


class StrictBoolean(fields.Boolean):
    """A JSON boolean only: "yes", 1 or "true" are wrong types, not booleans."""

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, bool):
            raise self.make_error("invalid", input=value)
        return value


class UTCDateTime(fields.DateTime):
    """Naive UTC datetimes from the database, written as ISO 8601 with a Z."""

    def _serialize(self, value, attr, obj, **kwargs):
        return _utc_text(value)


class Email(Text):
    """An email address, in the one normal form (api.emails) register and login share."""

    def _deserialize(self, value, attr, data, **kwargs):
        value = super()._deserialize(value, attr, data, **kwargs)
        try:
            return normalise_email(value)
        except InvalidEmail as e:
            raise ValidationError(f"Not a valid email address: {e}") from e


def _email():
    return Email(required=True, validate=validate.Length(max=EMAIL_MAX_LENGTH),
                 metadata={"example": "ada@example.com", "format": "email",
                           "pattern": EMAIL_PATTERN,
                           "description": "checked and normalised by email-validator "
                                          "(no special-use domains such as .test)"})


class RegisterSchema(Schema):
    email = _email()
    password = Text(required=True, load_only=True, validate=PASSWORD_LENGTH,
                             metadata={"format": "password"})


class LoginSchema(Schema):
    email = _email()
    password = Text(required=True, load_only=True, validate=validate.Length(max=1024),
                             metadata={"format": "password"})


class UserSchema(Schema):
    id = fields.UUID(required=True)
    email = fields.String(required=True)
    is_active = fields.Boolean(required=True)
    created_at = UTCDateTime(required=True)


class RegisteredSchema(Schema):
    id = fields.UUID(required=True)
    email = fields.String(required=True)
    created_at = UTCDateTime(required=True)


class TokenPairSchema(Schema):
    access_token = fields.String(required=True)
    refresh_token = fields.String(required=True)
    token_type = fields.String(required=True, validate=validate.Equal("Bearer"))
    expires_in = fields.Integer(required=True, metadata={"description": "access token seconds"})


class PasswordChangeSchema(Schema):
    current_password = Text(required=True, load_only=True,
                                     validate=validate.Length(max=1024))
    new_password = Text(required=True, load_only=True, validate=PASSWORD_LENGTH)


class ContentCreateSchema(Schema):
    title = Text(required=True, validate=validate.Length(min=1, max=200))
    body = Text(load_default="", validate=validate.Length(max=100_000))
    is_published = StrictBoolean(load_default=False)


class ContentPatchSchema(Schema):
    title = Text(validate=validate.Length(min=1, max=200))
    body = Text(validate=validate.Length(max=100_000))
    is_published = StrictBoolean()


class ContentSchema(Schema):
    id = fields.UUID(required=True)
    title = fields.String(required=True)
    body = fields.String(required=True)
    is_published = fields.Boolean(required=True)
    owner_id = fields.UUID(required=True)
    created_at = UTCDateTime(required=True)
    updated_at = UTCDateTime(required=True)


def content_document(item):
    """ContentSchema's dump of ``item``, written out: the read path's hottest serialisation.

    marshmallow costs tens of microseconds per item, most of a list's time; ContentSchema
    still documents the response, and tests/api/test_schemas.py holds this function to
    ContentSchema().dump for generated items.
    """
    return {
        "id": str(item.id),
        "title": item.title,
        "body": item.body,
        "is_published": bool(item.is_published),
        "owner_id": str(item.owner_id),
        "created_at": _utc_text(item.created_at),
        "updated_at": _utc_text(item.updated_at),
    }


def _utc_text(value):
    return None if value is None else value.isoformat(timespec="microseconds") + "Z"


class ContentQuerySchema(Schema):
    limit = fields.Integer(load_default=20, validate=validate.Range(min=1, max=100))
    cursor = Text(validate=validate.Length(max=512), metadata={
        "description": "next_cursor of the previous page, exactly as the API issued it "
                       "(signed: any other value, even of this shape, is a 422)",
        "pattern": CURSOR_PATTERN})
    owner = Text(validate=validate.OneOf(["me"]))
    published = fields.Boolean(metadata={"description": "true or false"})
    q = Text(validate=validate.Length(max=200),
                      metadata={"description": "case-insensitive substring of the title"})

    @post_load
    def _position(self, data, **kwargs):
        """The cursor becomes ``after``, the (created_at, id) it points after."""
        if "cursor" in data:
            try:
                data["after"] = decode_cursor(data.pop("cursor"))
            except BadCursor as e:
                raise ValidationError("Not a cursor issued by this API.", "cursor") from e
        return data


class ContentPageSchema(Schema):
    items = fields.List(fields.Nested(ContentSchema), required=True)
    next_cursor = fields.String(required=True, allow_none=True)
