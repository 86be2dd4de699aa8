"""Email addresses: the one normalisation register, login, lockout and the CLI all use."""
from email_validator import EmailNotValidError, validate_email

#: RFC 5321's limit on a forward path, as the users table stores it.
MAX_LENGTH = 254


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
