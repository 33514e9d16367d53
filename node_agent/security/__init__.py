"""How the agent decides whether a request comes from its control plane."""
