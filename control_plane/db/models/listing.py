"""The lists' version: one row that every write which can change a server list replaces.

Database triggers (migration 0028) give ``version`` a new random value in the same
transaction as every insert, update or delete of a row a list reads (servers, their
allocations and sub-users, the node names and blueprint fields the Pterodactyl list shows).
A list read in a snapshot that saw version V is therefore the list of every snapshot that
sees V: the authentication read carries V, and a replica may answer a list it built at V
again (``services/servers/list_cache.py``). Random, not counted: a database restored from a
backup, or a table made again by a migration, never meets a value a replica cached before.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Label, select
from sqlalchemy.orm import Mapped, mapped_column

from control_plane.db.models.base import Base

# The one row's id.
THE_ROW = 1


class ListingVersion(Base):
    __tablename__ = "listing_version"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    version: Mapped[int] = mapped_column(BigInteger)


def listing_version_column() -> Label[int]:
    """The version as a column of any statement: read in that statement's snapshot (NULL in a
    database made without the migration's triggers: nothing is cached there)."""
    return (
        select(ListingVersion.version)
        .where(ListingVersion.id == THE_ROW)
        .scalar_subquery()
        .label("listing_version")
    )
