"""Game consoles: output followed from Docker, a ring buffer per server, throttling, viewers.

``limits`` holds the configurable caps, ``throttle`` the per-second output cap,
``server_console`` one server's buffer, viewers and output follower, and ``session`` the
protocol of one console WebSocket.
"""
