"""Keeping secrets out of everything the dashboard serves.

Job errors, problems and locations are shown as recorded, and those may quote a command
line or a connection string. Every document and page goes through one ``Redactor``: the
secrets it knows (repository passwords, webhook URLs, the dashboard's own tokens) are
replaced wherever they appear, and so are the credentials of any URL
(``scheme://user:secret@host``) and ``password=...``-style settings.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TypeVar, cast

from safehold.dr.policy import Policy
from safehold.dr.status import repository_password
from safehold.errors import SafeholdError

__all__ = ["MASK", "Redactor", "policy_secrets"]

log = logging.getLogger("safehold.http")

T = TypeVar("T")

MASK = "***"
MIN_SECRET = 4  # shorter values would mask ordinary words
_URL_CREDENTIALS = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://[^/\s:@]*:)[^@\s/]+@")
_SETTINGS = re.compile(
    r"((?:password|passwd|pwd|secret|token|access_key|secret_key|api_key)\s*[=:]\s*)"
    r"(?:'[^']*'|\"[^\"]*\"|[^\s&;,]+)",
    re.IGNORECASE,
)


class Redactor:
    def __init__(self, secrets: Iterable[str] = ()) -> None:
        # longest first, so that a secret containing another is masked whole
        self.secrets = sorted({s for s in secrets if len(s) >= MIN_SECRET}, key=len, reverse=True)

    def text(self, value: str) -> str:
        for secret in self.secrets:
            value = value.replace(secret, MASK)
        value = _URL_CREDENTIALS.sub(rf"\g<1>{MASK}@", value)
        return _SETTINGS.sub(rf"\g<1>{MASK}", value)

    def doc(self, value: T) -> T:
        """``value`` with every string in it (keys included) redacted."""
        return cast(T, self._redact(value))

    def _redact(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {self._redact(k): self._redact(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self._redact(v) for v in value]
        return value


def policy_secrets(policy: Policy) -> list[str]:
    """The secrets a policy points at: repository passwords and webhook URLs (with their
    paths and queries, where tokens live). One that cannot be read is skipped: a webhook
    file missing now cannot leak either."""
    found: list[str] = []
    for name, repo in policy.repositories.items():
        try:
            found.append(repository_password(repo).decode("utf-8", "replace"))
        except (SafeholdError, OSError) as exc:
            log.warning("repository %s: password not readable for redaction: %s", name, exc)
    for webhook in policy.daemon.alerts.webhooks:
        if webhook.url is not None:
            found.append(webhook.url)
        elif webhook.url_file is not None:
            with contextlib.suppress(OSError):
                found.append(Path(webhook.url_file).read_text().strip())
        elif webhook.url_env and os.environ.get(webhook.url_env):
            found.append(os.environ[webhook.url_env])
    return found
