"""User accounts: creating users and checking passwords (werkzeug.security hashes).

Used by the login routes, ``interformer create-admin`` and the demo set-up. Passwords are
stored only as salted hashes (scrypt by default; ``PASSWORD_HASH_METHOD`` in the app config
can name another werkzeug method).
"""

from __future__ import annotations

import re

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from werkzeug.security import check_password_hash, generate_password_hash

from .models import Role, User

USERNAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}")
MIN_PASSWORD = 8
DEFAULT_HASH_METHOD = "scrypt"
# Compared against when the user does not exist, so that timing does not tell which names exist.
_DUMMY_HASH = generate_password_hash("not a password", method="scrypt")


class AccountError(ValueError):
    """A user cannot be created as asked; the message says why."""


def find_user(session: Session, username: str) -> User | None:
    return session.scalar(select(User).where(User.username == username))


def create_user(session: Session, username: str, password: str, role: Role | str = Role.ANNOTATOR,
                hash_method: str = DEFAULT_HASH_METHOD) -> User:
    """Add and commit a user; ``AccountError`` for a bad name, short password, unknown role or taken name."""
    role = Role(role)
    if not USERNAME.fullmatch(username or ""):
        raise AccountError("a username is 1-64 letters, digits or '_.@-', starting with a letter or digit")
    if len(password or "") < MIN_PASSWORD:
        raise AccountError(f"a password needs at least {MIN_PASSWORD} characters")
    if find_user(session, username) is not None:
        raise AccountError(f"the username {username!r} is taken")
    user = User(username=username, password_hash=generate_password_hash(password, method=hash_method),
                role=role.value)
    session.add(user)
    try:
        session.commit()
    except IntegrityError:  # the same name taken at the same moment by another request
        session.rollback()
        raise AccountError(f"the username {username!r} is taken") from None
    return user


def authenticate(session: Session, username: str, password: str) -> User | None:
    """The active user with this name and password, else None."""
    user = find_user(session, username or "")
    if user is None:
        check_password_hash(_DUMMY_HASH, password or "")
        return None
    if not check_password_hash(user.password_hash, password or "") or not user.active:
        return None
    return user


def count_users(session: Session) -> int:
    return int(session.scalar(select(func.count()).select_from(User)) or 0)
