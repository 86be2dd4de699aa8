"""Conditional requests (RFC 9110 section 13): If-Match and If-None-Match read to the letter.

``If-Match`` uses the strong comparison (a weak tag never matches), ``If-None-Match`` the
weak one; either is ``*`` or a comma-separated list meaning "any of these". A value that
is neither is a client error: guessing would turn a guarded write into an unguarded one.
"""
import re

#: entity-tag = [ "W/" ] DQUOTE *etagc DQUOTE; etagc = %x21 / %x23-7E / obs-text
_ENTITY_TAG = re.compile(r'(W/)?"([\x21\x23-\x7e\x80-\xff]*)"')
_OWS = " \t"
ANY = "*"
#: What the OpenAPI document states of both headers (a little stricter than the parser,
#: which also takes empty list elements and obs-text).
_TAG = r'(W/)?"[\x21\x23-\x7e]*"'
DOCUMENTED_PATTERN = rf"^[ \t]*(\*|{_TAG}([ \t]*,[ \t]*{_TAG})*)[ \t]*$"


class MalformedCondition(ValueError):
    """A conditional header that is neither ``*`` nor a list of entity-tags."""


def parse_entity_tags(name, value):
    """None when absent, ``ANY`` for ``*``, else a list of ``(weak, opaque)`` pairs."""
    if value is None:
        return None
    text = value.strip(_OWS)
    if text == ANY:
        return ANY
    tags, pos = [], 0
    while pos < len(text):
        if text[pos] in _OWS + ",":  # empty list elements are allowed (RFC 9110 5.6.1)
            pos += 1
            continue
        match = _ENTITY_TAG.match(text, pos)
        if match is None:
            break
        tags.append((match.group(1) is not None, match.group(2)))
        pos = match.end()
        while pos < len(text) and text[pos] in _OWS:
            pos += 1
        if pos < len(text) and text[pos] != ",":
            break
    if pos < len(text) or not tags:
        raise MalformedCondition(
            f'{name} must be * or a list of quoted entity-tags such as "abc", W/"abc"')
    return tags


class Preconditions:
    """The If-Match and If-None-Match of one request, parsed; raises MalformedCondition."""

    def __init__(self, if_match=None, if_none_match=None):
        self.if_match = parse_entity_tags("If-Match", if_match)
        self.if_none_match = parse_entity_tags("If-None-Match", if_none_match)

    @classmethod
    def of(cls, headers):
        return cls(headers.get("If-Match"), headers.get("If-None-Match"))

    @property
    def present(self):
        """True when the request states any condition (its write must be version-guarded)."""
        return self.if_match is not None or self.if_none_match is not None

    def allow_change(self, etag):
        """Whether a state-changing method may go ahead on the representation ``etag``."""
        return self._if_match_holds(etag) and not self.none_match_fails(etag)

    def none_match_fails(self, etag):
        """True when If-None-Match names ``etag`` (weakly) or is ``*``: 304 on GET, else 412."""
        tags = self.if_none_match
        if tags is None:
            return False
        return tags == ANY or any(opaque == etag for _, opaque in tags)

    def _if_match_holds(self, etag):
        tags = self.if_match
        if tags is None or tags == ANY:
            return True
        return any(not weak and opaque == etag for weak, opaque in tags)
