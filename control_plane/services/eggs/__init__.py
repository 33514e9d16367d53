"""Community eggs (Pterodactyl, Pelican) as blueprints: import, export, their rules."""
