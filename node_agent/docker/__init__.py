"""Everything the agent asks of dockerd, behind small typed objects.

``hardening`` shapes every container the agent creates (the one place the DESIGN.md
"Containers (agent)" rules live), ``network`` owns the agent's bridge network, and
``containers`` creates, starts, stops, inspects and removes them. Raw Docker JSON never
leaves this package; failures leave it as the errors in ``errors``.
"""
