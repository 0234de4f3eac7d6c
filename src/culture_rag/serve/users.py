"""The accounts of a server a research group shares (`culture-rag serve --auth users.toml`).

users.toml holds one table per user with an Argon2id hash of the password, never the password:

    [users.alice]
    password_hash = "$argon2id$v=19$m=65536,t=3,p=4$…"

`culture-rag users add NAME --auth users.toml` writes an entry. Argon2id (argon2-cffi) rather than
hashlib.scrypt: its PHC strings carry their own salt and cost parameters, so a file written today
still verifies after the defaults are raised, and nothing here encodes salts or compares digests
by hand.
"""

from __future__ import annotations

import logging
import re
import threading
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from argon2 import PasswordHasher, extract_parameters
from argon2.exceptions import InvalidHashError, VerificationError

from culture_rag.errors import UsersFileError
from culture_rag.files import write_text

log = logging.getLogger(__name__)

# TOML bare keys, so a name never needs quoting and cannot smuggle markup into the login page.
NAME_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,64}")
MIN_PASSWORD_CHARS = 8
MAX_PASSWORD_CHARS = 1024
HASH_KEY = "password_hash"


def _hasher() -> PasswordHasher:
    return PasswordHasher()  # RFC 9106's low-memory profile: 64 MiB, 3 passes


@dataclass(frozen=True)
class Users:
    """The accounts of one users.toml as read."""

    path: Path
    hashes: dict[str, str] = field(repr=False)

    def verify(self, name: str, password: str) -> bool:
        stored = self.hashes.get(name)
        try:
            # An unknown name costs one hash too, so timing does not tell which names exist.
            _hasher().verify(stored or DECOY_HASH, password)
        except (VerificationError, InvalidHashError):
            return False
        return stored is not None


# The hash of a random password nobody kept, at the default cost: unknown names are checked
# against it.
DECOY_HASH = "$argon2id$v=19$m=65536,t=3,p=4$KmGNVnk5drBg/cG3HDcs3g$aQSG2nby8PxVlPWMTiUFG8zRA769qkafZtfwsFOIQpA"


def read_users(path: str | Path) -> Users:
    """The accounts in `path`; a malformed file, entry or a plain-text password is an error
    naming the file and the entry."""
    path = Path(path)
    hashes = {name: entry[HASH_KEY] for name, entry in _entries(path).items()}
    if not hashes:
        raise UsersFileError(path, f"no users, so nobody could log in; add one with `culture-rag users add NAME --auth {path}`")
    return Users(path, hashes)


def check_name(name: str, path: str | Path = "users.toml") -> str:
    if not NAME_PATTERN.fullmatch(name or ""):
        raise UsersFileError(path, "a user name is 1 to 64 letters, digits, '_' or '-'", entry=name)
    return name


def check_password(password: str, path: str | Path = "users.toml") -> str:
    if not MIN_PASSWORD_CHARS <= len(password) <= MAX_PASSWORD_CHARS:
        raise UsersFileError(
            path, f"a password has {MIN_PASSWORD_CHARS} to {MAX_PASSWORD_CHARS} characters; this one has {len(password)}"
        )
    return password


def add_user(path: str | Path, name: str, password: str) -> bool:
    """Set `name`'s password in `path` (created with mode 0600 if missing); True when an
    existing entry was replaced. Comments and other entries are kept as they were."""
    import tomlkit

    path = Path(path)
    check_name(name, path)
    check_password(password, path)
    existing = _entries(path) if path.exists() else {}
    document = tomlkit.parse(path.read_text(encoding="utf-8")) if path.exists() else tomlkit.document()
    if "users" not in document:
        document["users"] = tomlkit.table(is_super_table=True)
    entry = tomlkit.table()
    entry[HASH_KEY] = _hasher().hash(password)
    document["users"][name] = entry
    _write_private(path, tomlkit.dumps(document))
    return name in existing


def remove_user(path: str | Path, name: str) -> None:
    import tomlkit

    path = Path(path)
    if name not in _entries(path):
        raise UsersFileError(path, "no such user", entry=name)
    document = tomlkit.parse(path.read_text(encoding="utf-8"))
    del document["users"][name]
    _write_private(path, tomlkit.dumps(document))


def _entries(path: Path) -> dict[str, dict]:
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsersFileError(path, f"no such file; create it with `culture-rag users add NAME --auth {path}`") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UsersFileError(path, f"not valid TOML ({exc})") from None
    for key in raw:
        if key != "users":
            raise UsersFileError(path, "unknown top-level entry; the file holds only [users.NAME] tables", entry=key)
    users = raw.get("users", {})
    if not isinstance(users, dict):
        raise UsersFileError(path, "must be a table of [users.NAME] entries", entry="users")
    for name, entry in users.items():
        _check_entry(path, name, entry)
    return users


def _check_entry(path: Path, name: str, entry) -> None:
    fix = f"set it with `culture-rag users add {name} --auth {path}`"
    if not NAME_PATTERN.fullmatch(name):
        raise UsersFileError(path, "a user name is 1 to 64 letters, digits, '_' or '-'", entry=name)
    if not isinstance(entry, dict):
        raise UsersFileError(path, f"must be a table with {HASH_KEY} = \"$argon2id$…\"", entry=name)
    if "password" in entry:
        raise UsersFileError(path, f"plain-text passwords are refused; delete the 'password' key and {fix}", entry=name)
    unknown = sorted(set(entry) - {HASH_KEY})
    if unknown:
        raise UsersFileError(path, f"unknown key {unknown[0]!r}; an entry holds only {HASH_KEY}", entry=name)
    value = entry.get(HASH_KEY)
    if not isinstance(value, str):
        raise UsersFileError(path, f"{HASH_KEY} is missing; {fix}", entry=name)
    try:
        extract_parameters(value)
    except (InvalidHashError, ValueError):
        raise UsersFileError(
            path, f"{HASH_KEY} is not an Argon2 hash (\"$argon2id$…\"); plain-text passwords are refused; {fix}", entry=name
        ) from None


def _write_private(path: Path, text: str) -> None:
    """Atomically, readable by the owner only: the hashes are not secrets, but slow to attack
    only while nobody can copy them."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text(path, text, mode=0o600)


class UsersFile:
    """The accounts of a users.toml for a running server: re-read when the file changes, so
    `users add` takes effect without a restart. A change that breaks the file is logged and the
    accounts read before stay in force."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._users = read_users(self.path)
        self._stamp = self._stat()

    def _stat(self) -> tuple[int, int] | None:
        try:
            st = self.path.stat()
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size)

    def current(self) -> Users:
        with self._lock:
            stamp = self._stat()
            if stamp is not None and stamp != self._stamp:
                self._stamp = stamp
                try:
                    self._users = read_users(self.path)
                except UsersFileError as exc:
                    log.error("%s; the accounts read before stay in force", exc)
            return self._users

    def verify(self, name: str, password: str) -> bool:
        return self.current().verify(name, password)
