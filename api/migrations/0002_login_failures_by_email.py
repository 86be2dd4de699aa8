"""Count failed logins per email instead of per account.

Keying by the normalised email lets unknown emails lock out exactly like real ones, so a 429
no longer reveals that an account exists. Failures are short-lived, so the old table is
dropped rather than converted.
"""
from peewee import CharField, DateTimeField, Model


def upgrade(db):
    class LoginFailure(Model):
        email = CharField(max_length=320)
        at = DateTimeField()

        class Meta:
            database = db
            table_name = "login_failures"
            indexes = ((("email", "at"), False), (("at",), False))

    db.execute_sql("DROP TABLE IF EXISTS login_failures")
    db.create_tables([LoginFailure], safe=False)
