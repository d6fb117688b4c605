"""The ``[daemon] http*`` keys: where the dashboard and JSON API listen, TLS, downloads,
and who may read or act (``[daemon.http_auth]``).

Binding to anything but a loopback address needs TLS (``http_tls_cert`` and
``http_tls_key``) or an explicit ``http_insecure = true``, and at least one credential:
a dashboard reachable from the network must never be open. Secrets are never literal:
tokens come from files or environment variables, passwords from htpasswd-style files of
bcrypt or argon2 hashes. docs/dashboard.md describes every key.
"""

from __future__ import annotations

import ipaddress
from typing import Any, ClassVar

from pydantic import ValidationInfo, field_validator, model_validator

from safehold.dr.fields import OFF, AbsolutePath, EnvName, Listen, PolicyModel, fail

__all__ = ["ROLES", "HttpAuth", "HttpSettings", "binding_problem", "is_loopback"]

ROLES = ("viewer", "operator")  # an operator may do what a viewer may, and act


def is_loopback(listen: str) -> bool:
    """True when ``HOST:PORT`` names a loopback address (127.0.0.0/8, ::1, localhost)."""
    host = listen.rpartition(":")[0].removeprefix("[").removesuffix("]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


class HttpAuth(PolicyModel):
    """Credentials of the two roles. A token is a long random string (at least 16
    characters) read from a file or an environment variable at start; a password file
    holds ``user:hash`` lines (``htpasswd -B``'s bcrypt, or argon2 ``$argon2id$...``)."""

    viewer_token_file: AbsolutePath | None = None
    viewer_token_env: EnvName | None = None
    viewer_password_file: AbsolutePath | None = None
    operator_token_file: AbsolutePath | None = None
    operator_token_env: EnvName | None = None
    operator_password_file: AbsolutePath | None = None
    viewer_token: object = None  # only so that the error can say why it is refused
    operator_token: object = None

    LITERAL: ClassVar[str] = (
        "a literal token is not allowed in the policy file (it would be readable by everyone"
        " who can read the file and end up in version control): use {0}_token_file or"
        " {0}_token_env"
    )

    @field_validator("viewer_token", "operator_token", mode="before")
    @classmethod
    def _no_literal_token(cls, value: object, info: ValidationInfo) -> object:
        del value
        raise fail("literal_token", cls.LITERAL.format(str(info.field_name).split("_")[0]))

    @model_validator(mode="after")
    def _one_token_source(self) -> HttpAuth:
        for role in ROLES:
            if self.token_source(role)[0] == "both":
                raise fail(
                    "token_source",
                    f"give at most one of {role}_token_file and {role}_token_env",
                )
        return self

    def token_source(self, role: str) -> tuple[str, str | None]:
        """("file" | "env", its value), ("none", None), or ("both", None)."""
        path, env = getattr(self, f"{role}_token_file"), getattr(self, f"{role}_token_env")
        if path is not None and env is not None:
            return "both", None
        if path is not None:
            return "file", path
        if env is not None:
            return "env", env
        return "none", None

    def any_credential(self) -> bool:
        return any(
            self.token_source(role)[0] != "none"
            or getattr(self, f"{role}_password_file") is not None
            for role in ROLES
        )


class HttpSettings(PolicyModel):
    """The dashboard's keys of ``[daemon]`` (``DaemonSettings`` inherits them). ``http``
    comes last so that its validator sees the others."""

    http_tls_cert: AbsolutePath | None = None
    http_tls_key: AbsolutePath | None = None
    http_insecure: bool = False  # plain HTTP on a non-loopback address, knowingly
    http_allow_download: bool = False  # file contents from the snapshot browser
    http_auth: HttpAuth = HttpAuth()
    http: Listen = OFF

    @field_validator("http", mode="after")
    @classmethod
    def _safe_binding(cls, value: str, info: ValidationInfo) -> str:
        data: dict[str, Any] = info.data
        if (data.get("http_tls_cert") is None) != (data.get("http_tls_key") is None):
            raise fail("tls", "http_tls_cert and http_tls_key go together: give both or neither")
        auth = data.get("http_auth")
        if value != OFF and isinstance(auth, HttpAuth):
            problem = binding_problem(
                value, data.get("http_tls_cert") is not None, bool(data.get("http_insecure")), auth
            )
            if problem is not None:
                raise fail("insecure", problem)
        return value


def binding_problem(listen: str, tls: bool, insecure: bool, auth: HttpAuth) -> str | None:
    """Why serving on ``listen`` is not allowed, or None: beyond loopback it needs TLS (or
    ``http_insecure``) and a credential."""
    if is_loopback(listen):
        return None
    if not tls and not insecure:
        return (
            f"{listen} is not a loopback address: give http_tls_cert and http_tls_key, or"
            " set http_insecure = true to serve plain HTTP on purpose"
        )
    if not auth.any_credential():
        return (
            f"{listen} is not a loopback address: [daemon.http_auth] needs a viewer or"
            " operator token or password file"
        )
    return None
