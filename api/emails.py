"""Email addresses: the one normalisation register, login, lockout and the CLI all use."""
import re

from email_validator import SPECIAL_USE_DOMAIN_NAMES, EmailNotValidError, validate_email

#: RFC 5321's limit on a forward path, as the users table stores it.
MAX_LENGTH = 254

#: What the OpenAPI document states beyond ``format: email``: one @, a dot in the domain,
#: and no special-use domain (RFC 6761: .test, .invalid, .localhost...), which
#: email-validator refuses; schemathesis's positive-data check holds the two together.
_SPECIAL_USE = "|".join(map(re.escape, SPECIAL_USE_DOMAIN_NAMES))
DOCUMENTED_PATTERN = (rf"^[^@\s\x00]+@(?![^@]*\.(?:{_SPECIAL_USE})\.?$)(?!(?:{_SPECIAL_USE})\.?$)"
                      r"[^@\s\x00]+\.[^@\s\x00]+$")


class InvalidEmail(ValueError):
    """Not an address this API accepts; the message says why."""


def normalise_email(text):
    """The canonical form of ``text``: NFC, Unicode domain (punycode and fullwidth mapped by
    IDNA), lower case. Surrounding spaces are an error, as anywhere else in the address.
    """
    try:
        checked = validate_email(text, check_deliverability=False)
    except EmailNotValidError as e:
        raise InvalidEmail(str(e)) from e
    normalised = checked.normalized.lower()
    if len(normalised) > MAX_LENGTH:
        raise InvalidEmail(f"An email address may have at most {MAX_LENGTH} characters.")
    return normalised
