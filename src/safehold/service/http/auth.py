"""Who may read and who may act: viewer and operator credentials, sessions, CSRF.

A request proves its role with ``Authorization: Bearer TOKEN``, ``Authorization: Basic``
(a user of a password file), or the session cookie the login form sets. An operator may
do everything a viewer may. Reads are open only when no viewer credential is configured
and the server listens on a loopback address; actions always need an operator.

Browsers send cookies and Basic credentials by themselves, so a POST authenticated by
either must carry the CSRF token of its session (a hidden form field, or the
``X-CSRF-Token`` header); a Bearer token is never sent by a browser on its own and needs
none. Sessions are signed with a key made at start: a restart logs everyone out.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from safehold.dr.policy_http import ROLES, HttpAuth, is_loopback
from safehold.errors import InvalidArgument

__all__ = ["SESSION_COOKIE", "Authenticator", "Identity", "load_authenticator"]

SESSION_COOKIE = "safehold_session"
SESSION_SECONDS = 12 * 3600
MIN_TOKEN = 16
VERIFIED_SECONDS = 300.0  # a Basic password checked once is trusted this long (hashes are slow)


@dataclass(frozen=True)
class Identity:
    role: str  # "viewer" or "operator"; "anonymous" where reads are open
    via: str  # "bearer", "basic", "session" or "open"
    session: str = ""  # the cookie's value, which the CSRF token is bound to

    @property
    def ambient(self) -> bool:
        """Sent by the browser on its own (so a forged cross-site POST would carry it)."""
        return self.via in ("basic", "session")

    def may(self, role: str) -> bool:
        if role == "viewer":
            return self.role in ROLES or self.via == "open"
        return self.role == "operator"


def _read_token(auth: HttpAuth, role: str) -> bytes | None:
    kind, value = auth.token_source(role)
    if kind == "none" or value is None:
        return None
    if kind == "file":
        try:
            token = Path(value).read_bytes().strip()
        except OSError as exc:
            raise InvalidArgument(
                f"cannot read {role} token file {value}: {exc.strerror}"
            ) from None
        where = f"file {value}"
    else:
        if not os.environ.get(value):
            raise InvalidArgument(f"environment variable {value} ({role}_token_env) is not set")
        token = os.environ[value].strip().encode()
        where = f"environment variable {value}"
    if len(token) < MIN_TOKEN:
        raise InvalidArgument(f"the {role} token in {where} is shorter than {MIN_TOKEN} characters")
    return token


def _read_passwords(path: str | None, role: str) -> dict[str, str]:
    """``user:hash`` lines; blank lines and ``#`` comments are skipped."""
    if path is None:
        return {}
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as exc:
        raise InvalidArgument(f"cannot read {role} password file {path}: {exc.strerror}") from None
    users: dict[str, str] = {}
    for number, line in enumerate(lines, 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        user, sep, hashed = line.strip().partition(":")
        if not sep or not user or not hashed.startswith(("$2a$", "$2b$", "$2y$", "$argon2")):
            raise InvalidArgument(
                f"{path}:{number}: expected user:hash with a bcrypt ($2b$...) or argon2"
                " ($argon2id$...) hash"
            )
        users[user] = hashed
    return users


def _check_password(password: str, hashed: str) -> bool:
    if hashed.startswith("$argon2"):
        from argon2 import PasswordHasher
        from argon2.exceptions import InvalidHashError, VerificationError

        try:
            return PasswordHasher().verify(hashed, password)
        except (VerificationError, InvalidHashError):
            return False
    import bcrypt

    try:
        return bcrypt.checkpw(password.encode(), hashed.encode())
    except ValueError:
        return False


class Authenticator:
    def __init__(
        self,
        tokens: dict[str, bytes],
        passwords: dict[str, dict[str, str]],
        open_reads: bool,
        secure_cookie: bool,
    ) -> None:
        self.tokens = tokens
        self.passwords = passwords
        self.open_reads = open_reads
        self.secure_cookie = secure_cookie
        self._key = secrets.token_bytes(32)
        self._verified: dict[bytes, tuple[str, float]] = {}
        self._mutex = threading.Lock()

    @property
    def configured(self) -> bool:
        return bool(self.tokens) or any(self.passwords.values())

    def secrets(self) -> list[str]:
        """The tokens, for the redactor."""
        return [token.decode("utf-8", "replace") for token in self.tokens.values()]

    # -- credentials ----------------------------------------------------------------

    def token_role(self, token: str) -> str | None:
        given = token.encode()
        found = None
        for role in ROLES:  # compare with every token, so timing says nothing
            expected = self.tokens.get(role)
            if expected is not None and hmac.compare_digest(given, expected):
                found = role
        return found

    def password_role(self, user: str, password: str) -> str | None:
        """The highest role whose password file has ``user`` with ``password``."""
        cache_key = hashlib.sha256(f"{user}\0{password}".encode()).digest()
        with self._mutex:
            cached = self._verified.get(cache_key)
        if cached is not None and time.monotonic() - cached[1] < VERIFIED_SECONDS:
            return cached[0]
        found = None
        for role in ROLES:
            hashed = self.passwords.get(role, {}).get(user)
            if hashed is not None and _check_password(password, hashed):
                found = role
        if found is not None:
            with self._mutex:
                self._verified[cache_key] = (found, time.monotonic())
        return found

    def identify(self, authorization: str | None, cookie: str | None) -> Identity | None:
        """The identity a request proves; None when it proves none (or a wrong one)."""
        if authorization:
            scheme, _, value = authorization.partition(" ")
            if scheme.lower() == "bearer":
                role = self.token_role(value.strip())
                return Identity(role, "bearer") if role else None
            if scheme.lower() == "basic":
                return self._basic(value.strip())
            return None
        if cookie:
            role = self.session_role(cookie)
            if role is not None:
                return Identity(role, "session", cookie)
        if self.open_reads:
            return Identity("anonymous", "open")
        return None

    def _basic(self, value: str) -> Identity | None:
        try:
            user, _, password = base64.b64decode(value, validate=True).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return None
        role = self.password_role(user, password)
        return Identity(role, "basic", f"basic:{user}") if role else None

    # -- sessions and CSRF ----------------------------------------------------------

    def _sign(self, text: str) -> str:
        return hmac.new(self._key, text.encode(), hashlib.sha256).hexdigest()

    def new_session(self, role: str) -> str:
        body = f"{role}.{int(time.time()) + SESSION_SECONDS}.{secrets.token_hex(8)}"
        return f"{body}.{self._sign(body)}"

    def session_role(self, cookie: str) -> str | None:
        body, _, signature = cookie.rpartition(".")
        if not hmac.compare_digest(signature, self._sign(body)):
            return None
        role, expires, _nonce = ([*body.split("."), "", "", ""])[:3]
        if role not in ROLES or not expires.isdigit() or int(expires) < time.time():
            return None
        return role

    def csrf_token(self, identity: Identity) -> str:
        return self._sign(f"csrf:{identity.session}")

    def csrf_ok(self, identity: Identity, token: str | None) -> bool:
        if not identity.ambient:
            return True
        return token is not None and hmac.compare_digest(token, self.csrf_token(identity))


def load_authenticator(auth: HttpAuth, listen: str, tls: bool) -> Authenticator:
    """Read the tokens and password files the policy names (errors name the file)."""
    tokens = {role: token for role in ROLES if (token := _read_token(auth, role)) is not None}
    passwords = {
        role: _read_passwords(getattr(auth, f"{role}_password_file"), role) for role in ROLES
    }
    has_viewer = "viewer" in tokens or bool(passwords["viewer"])
    return Authenticator(tokens, passwords, not has_viewer and is_loopback(listen), tls)
