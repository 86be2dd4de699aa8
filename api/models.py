"""The peewee models: users, refresh sessions, login failures, content items, fault switches."""
import uuid
from datetime import UTC, datetime

from peewee import (
    BooleanField,
    CharField,
    DateTimeField,
    FloatField,
    ForeignKeyField,
    IntegerField,
    Model,
    TextField,
    UUIDField,
)

from api.db import database


def utcnow():
    """The current UTC time as a naive datetime (the database stores UTC without a zone)."""
    return datetime.now(UTC).replace(tzinfo=None)


class BaseModel(Model):
    class Meta:
        database = database


class User(BaseModel):
    id = UUIDField(primary_key=True, default=uuid.uuid4)
    email = CharField(max_length=254, unique=True)
    password_hash = CharField(max_length=255)
    is_active = BooleanField(default=True)
    created_at = DateTimeField(default=utcnow)

    class Meta:
        table_name = "users"


class RefreshSession(BaseModel):
    """One login: every token pair rotated from it shares this id (the token family)."""

    id = UUIDField(primary_key=True, default=uuid.uuid4)
    user = ForeignKeyField(User, backref="sessions", on_delete="CASCADE")
    current_jti = CharField(max_length=64)
    created_at = DateTimeField(default=utcnow)
    expires_at = DateTimeField()
    revoked_at = DateTimeField(null=True)
    revoked_reason = CharField(max_length=32, null=True)

    class Meta:
        table_name = "sessions"


class LoginFailure(BaseModel):
    """One failed login for an email (known or not), kept for the lockout window."""

    email = CharField(max_length=320)
    at = DateTimeField(default=utcnow)

    class Meta:
        table_name = "login_failures"


class Content(BaseModel):
    id = UUIDField(primary_key=True, default=uuid.uuid4)
    owner = ForeignKeyField(User, backref="content", on_delete="CASCADE")
    title = CharField(max_length=200)
    body = TextField(default="")
    is_published = BooleanField(default=False)
    version = IntegerField(default=1)
    created_at = DateTimeField(default=utcnow)
    updated_at = DateTimeField(default=utcnow)

    class Meta:
        table_name = "content"


class FaultSwitch(BaseModel):
    """One switched-on fire-drill fault kind (api/faults.py); off once ``expires_at`` passed."""

    kind = CharField(max_length=16, primary_key=True)
    ratio = FloatField()
    latency_ms = IntegerField(default=0)
    expires_at = DateTimeField()
    set_at = DateTimeField()

    class Meta:
        table_name = "fault_switches"
