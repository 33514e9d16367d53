"""Building blocks of every request and response model."""

from __future__ import annotations

from typing import Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field

T = TypeVar("T")


class Input(BaseModel):
    """Every request model: unknown fields are refused."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)


class Output(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class PageQuery(Input):
    """A page of a list. Frozen: its parse is kept per query text (``api.routing``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    page: int = Field(1, ge=1, le=100_000)
    per_page: int = Field(50, ge=1, le=100)

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.per_page


class PageMeta(Output):
    page: int
    per_page: int
    total: int


class Page(Output, Generic[T]):
    """One page of a list: ``data`` and ``meta`` (page, per_page, total)."""

    data: list[T]
    meta: PageMeta
