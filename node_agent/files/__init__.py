"""A server's files, confined to its volume by construction (DESIGN.md "Files (agent)").

paths.py      a user's path string -> validated components (no ``..``, no NUL)
confine.py    open a directory beneath the volume root: openat2 with RESOLVE_BENEATH |
              RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS, or one O_NOFOLLOW open per
              component; every later call is ``*at`` on that directory's descriptor
denylist.py   the server's gitignore-style deny-list
entries.py    listing and stat answers (symlinks reported, never followed)
writes.py     atomic writes (temp file in the same directory, then rename)
tree.py       mkdir, rename, copy, delete, chmod
archives.py   compress (tar.gz, zip);  extract.py  decompress with limits
pull.py       fetch a URL into a directory through shared.outbound
service.py    :class:`ServerFiles`, what the routes call (blocking work in threads)
errors.py     the exception tree;  limits.py  the ``[files]`` settings table
"""
