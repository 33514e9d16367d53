"""Game servers, by concern:

- ``access``: whether a caller sees a server, and their role and permissions on it;
- ``listing``: one page of the servers a caller may see, in one statement;
- ``placement``: a node with room, a port taken atomically, the server recorded;
- ``variables``: a server's variable values under its blueprint's rules;
- ``startup``: the startup command made of them, and the spec the node gets.

Calls to the node that runs a server are not here: they are the node API client's
(``control_plane/nodes/client.py``), made between transactions by the routes and
``control_plane/api/server_actions.py``.
"""
