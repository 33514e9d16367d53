"""Backups of a server's volume: encrypted, chunk-authenticated archives kept on the node.

store.py     records (``<data_dir>/backups/<server>/<backup>.json``) and file paths
archive.py   volume → tar → gzip → encrypted chunks (never following a symlink)
snapshot.py  a read-only btrfs snapshot to copy a running game consistently
extract.py   encrypted chunks → verified tar → a staging directory in the volume
swap.py      staging directory ↔ live files, journalled so a crash can be undone
service.py   what the routes call: background jobs, busy servers, events, recovery
"""
