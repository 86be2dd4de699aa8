"""The hand-written content serialisation stays ContentSchema's dump (the documented shape)."""
import uuid
from datetime import datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from api.models import Content
from api.schemas import ContentSchema, content_document

_datetimes = st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(9999, 1, 1))


@settings(max_examples=300, deadline=None)
@given(title=st.text(), body=st.text(), published=st.booleans(), created=_datetimes,
       updated=_datetimes, item_id=st.uuids(), owner=st.uuids())
def test_content_document_is_content_schemas_dump(title, body, published, created, updated,
                                                  item_id, owner):
    item = Content(id=item_id, owner=owner, title=title, body=body, is_published=published,
                   version=1, created_at=created, updated_at=updated)
    assert content_document(item) == ContentSchema().dump(item)


def test_content_document_has_exactly_the_schemas_fields():
    item = Content(id=uuid.uuid4(), owner=uuid.uuid4(), title="t", body="", is_published=False,
                   version=3, created_at=datetime(2026, 1, 1), updated_at=datetime(2026, 1, 1))
    assert list(content_document(item)) == list(ContentSchema().fields)
