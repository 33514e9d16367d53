"""Everything that talks to node agents lives here."""
