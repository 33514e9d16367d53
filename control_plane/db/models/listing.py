"""The lists' versions: what tells a replica that a server list it keeps is still the list.

``listing_version`` holds two rows. Row 1, the administrators' lists' version: triggers
(migration 0028) give it a new random value in the same transaction as every insert, update
or delete of a row any list reads (servers, their allocations and sub-users, the node names
and blueprint fields the Pterodactyl list shows). Row 2, the catalogue (migration 0031): the
same for blueprints and nodes' names only, what every user's list shares.

A user's version is the catalogue's plus the sum of the random ``list_version`` of the rows
that user's list reads (their servers, their own sub-user rows), which a trigger renews on
every write of the row (and of the server's allocations): a state change on one server
drops only the kept lists of the users who see that server.

Either version is read in the same statement (so snapshot) as what it stands for: a list
read in a snapshot that saw version V is the list of every snapshot that sees V. The
authentication read carries both, and a replica answers a list it built at V again
(``api/list_cache.py``). Random, not counted: a database restored from a backup, or a table
made again by a migration, never meets a value a replica cached before.
"""

from __future__ import annotations

from typing import Any, Final

from sqlalchemy import BigInteger, ColumnElement, Label, ScalarSelect, cast, func, select
from sqlalchemy.orm import Mapped, mapped_column

from control_plane.db.models.base import Base
from control_plane.db.models.server import Server, Subuser

# The administrators' row, and the catalogue's.
THE_ROW: Final = 1
CATALOGUE_ROW: Final = 2
# A user's sum is read modulo this (a number, not an overflow, whatever it adds up to).
_MODULUS: Final = 1 << 62


class ListingVersion(Base):
    __tablename__ = "listing_version"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    version: Mapped[int] = mapped_column(BigInteger)


def _row(row: int) -> ScalarSelect[int]:
    return select(ListingVersion.version).where(ListingVersion.id == row).scalar_subquery()


def listing_version_column() -> Label[int]:
    """The administrators' version as a column of any statement: read in that statement's
    snapshot (NULL in a database made without the migration's triggers: nothing is cached
    there)."""
    return _row(THE_ROW).label("listing_version")


def listing_versions(user_id: Any) -> tuple[Label[int], Label[int]]:
    """Both versions, as columns ``listing_version`` and ``user_listing_version`` of a
    statement that reads the user (``user_id``: its column): what the authentication read
    of a route that answers kept lists adds."""
    return listing_version_column(), user_listing_version_column(user_id)


def _summed(
    column: Any, *where: Any, joined: tuple[Any, Any, ColumnElement[bool]] | None = None
) -> ScalarSelect[Any]:
    summed = select(func.coalesce(func.sum(column), 0))
    if joined is not None:
        summed = summed.join_from(*joined)
    return summed.where(*where).scalar_subquery()


def user_listing_version_column(user_id: Any) -> Label[int]:
    """A user's version (``user_id``: a parameter, or the user's column of the statement it
    is a column of) in that statement's snapshot: the catalogue's plus the versions of the
    user's servers (which their allocations' writes renew) and of the user's sub-user rows.
    Each sum is read through an index (servers by owner, sub-user rows by user). NULL
    without migration 0031."""
    on_share = Subuser.server_id == Server.id
    total = (
        _row(CATALOGUE_ROW)
        + _summed(Server.list_version, Server.owner_id == user_id)
        + _summed(
            Server.list_version + Subuser.list_version,
            Subuser.user_id == user_id,
            joined=(Subuser, Server, on_share),
        )
    )
    return cast(total % _MODULUS, BigInteger).label("user_listing_version")
