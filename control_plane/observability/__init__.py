"""What operators watch: Prometheus metrics (``metrics``, ``requests``, ``pool``) and the
``/metrics`` route's protection (``control_plane/api/metrics.py``). See docs/metrics.md."""
