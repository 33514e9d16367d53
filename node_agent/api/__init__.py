"""HTTP routes of the agent, one module per resource."""
