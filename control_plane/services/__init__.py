"""Domain logic: takes an AsyncSession, knows nothing of HTTP."""
