"""Where this installation's mail goes."""

from __future__ import annotations

from django.conf import settings

#: Backends that keep mail on this machine (printed, written to files, held in memory or dropped).
_LOCAL_BACKENDS = frozenset({
    "django.core.mail.backends.console.EmailBackend",
    "django.core.mail.backends.filebased.EmailBackend",
    "django.core.mail.backends.locmem.EmailBackend",
    "django.core.mail.backends.dummy.EmailBackend",
})


def mail_is_delivered() -> bool:
    """False when mail never reaches its recipient (the default console backend): a page that mails
    someone a link should then show the link to the person who can pass it on."""
    return settings.EMAIL_BACKEND not in _LOCAL_BACKENDS


def where_mail_goes() -> str:
    """A sentence for people waiting for a mail that is not delivered ("" when it is)."""
    backend = settings.EMAIL_BACKEND
    if backend.endswith("console.EmailBackend"):
        return ("This installation does not send email (EMAIL_URL is not set): the message is printed in the "
                "web server's output, the lines starting with “web.1 |” in the terminal running bin/start.")
    if backend.endswith("filebased.EmailBackend"):
        return f"This installation does not send email: the message is written to a file in {settings.EMAIL_FILE_PATH}."
    return "" if mail_is_delivered() else "This installation does not send email."


def mail(request: object) -> dict[str, str]:
    """Context processor: ``undelivered_mail_note`` for the pages that promise a mail."""
    return {"undelivered_mail_note": where_mail_goes()}
