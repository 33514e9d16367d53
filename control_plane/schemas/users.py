"""Accounts, as administrators manage them."""

from __future__ import annotations

from pydantic import Field

from control_plane.schemas.common import Input, PageQuery
from control_plane.security.passwords import MAX_LENGTH, MIN_LENGTH


class UserCreate(Input):
    email: str = Field(min_length=3, max_length=254)
    password: str = Field(min_length=MIN_LENGTH, max_length=MAX_LENGTH)
    is_admin: bool = False


class UserUpdate(Input):
    disabled: bool | None = None
    is_admin: bool | None = None


class UserListQuery(PageQuery):
    # Accounts whose e-mail address contains this text (any case).
    search: str | None = Field(None, max_length=254)
