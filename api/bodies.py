"""JSON request bodies, read strictly: one parser decides what a well-formed body is.

Python's json module is lenient in ways an API contract should not be: a repeated key
silently keeps its last value, ``NaN`` and ``Infinity`` are accepted, an integer of more
than 4,300 digits raises ValueError (not a decoding error) and deep nesting RecursionError.
Each of those is a 400 with a reason here, never a 500 and never a silently empty body.
"""
import json


class MalformedBody(ValueError):
    """The request body is not one strict JSON document; the message says why."""


def _reject_duplicates(pairs):
    seen = {}
    for key, value in pairs:
        if key in seen:
            raise MalformedBody(f"the key {json.dumps(key)} appears more than once")
        seen[key] = value
    return seen


def _reject_constant(name):
    raise MalformedBody(f"{name} is not a JSON number")


_DECODER = json.JSONDecoder(object_pairs_hook=_reject_duplicates,
                            parse_constant=_reject_constant)


def parse_json_body(raw):
    """The document in ``raw`` (bytes); raises MalformedBody with a reason a client can act on."""
    if not raw.strip():
        raise MalformedBody("the body is empty; send a JSON object")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise MalformedBody(f"not UTF-8 at byte {e.start}") from e
    try:
        return _DECODER.decode(text)
    except MalformedBody:
        raise
    except json.JSONDecodeError as e:
        raise MalformedBody(f"{e.msg} at line {e.lineno} column {e.colno}") from e
    except RecursionError as e:
        raise MalformedBody("nested too deeply") from e
    except ValueError as e:
        # int() refuses more than sys.get_int_max_str_digits() digits (CVE-2020-10735)
        raise MalformedBody(f"a number is too long ({e})") from e
