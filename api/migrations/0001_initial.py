"""Create users, sessions, login_failures and content.

The models are frozen copies of api/models.py as of this migration, so later model
changes never alter what this step creates.
"""
import uuid

from peewee import (
    BooleanField,
    CharField,
    DateTimeField,
    ForeignKeyField,
    IntegerField,
    Model,
    TextField,
    UUIDField,
)


def upgrade(db):
    class Base(Model):
        class Meta:
            database = db

    class User(Base):
        id = UUIDField(primary_key=True, default=uuid.uuid4)
        email = CharField(max_length=254, unique=True)
        password_hash = CharField(max_length=255)
        is_active = BooleanField(default=True)
        created_at = DateTimeField()

        class Meta:
            table_name = "users"

    class RefreshSession(Base):
        id = UUIDField(primary_key=True, default=uuid.uuid4)
        user = ForeignKeyField(User, on_delete="CASCADE", index=True)
        current_jti = CharField(max_length=64)
        created_at = DateTimeField()
        expires_at = DateTimeField()
        revoked_at = DateTimeField(null=True)
        revoked_reason = CharField(max_length=32, null=True)

        class Meta:
            table_name = "sessions"

    class LoginFailure(Base):
        user = ForeignKeyField(User, on_delete="CASCADE", index=False)
        at = DateTimeField()

        class Meta:
            table_name = "login_failures"
            indexes = ((("user", "at"), False),)

    class Content(Base):
        id = UUIDField(primary_key=True, default=uuid.uuid4)
        owner = ForeignKeyField(User, on_delete="CASCADE", index=False)
        title = CharField(max_length=200)
        body = TextField()
        is_published = BooleanField()
        version = IntegerField()
        created_at = DateTimeField()
        updated_at = DateTimeField()

        class Meta:
            table_name = "content"
            # keyset pagination walks (created_at, id); owner=me walks it per owner
            indexes = (
                (("created_at", "id"), False),
                (("owner", "created_at", "id"), False),
            )

    db.create_tables([User, RefreshSession, LoginFailure, Content], safe=False)
