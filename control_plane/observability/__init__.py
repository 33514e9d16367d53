"""What operators watch: Prometheus metrics (``metrics``: the registry of each app;
``requests``: the middleware that counts answers by route template) and the resource
history's retention job (``retention``). The routes are ``control_plane/api/metrics.py`` and
``control_plane/api/stats_history.py``; docs/metrics.md says who may read what."""
