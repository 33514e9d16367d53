"""Community eggs (Pterodactyl ``PTDL_v1``/``PTDL_v2``, Pelican ``PLCN_v1`` to ``PLCN_v3``) as
blueprints, and blueprints as eggs again.

    reading.py       bytes (JSON or YAML, size-capped, no YAML anchors) -> egg dicts
    report.py        ReportItem / EggReport: what became of each part of an egg
    rules.py         an egg variable's Laravel rules -> our variable rules
    placeholders.py  ``{{server.build.default.port}}`` & co. rewritten to our spellings
    config.py        ``config.files`` / ``config.startup`` / ``config.stop`` / ``config.logs``
    variables.py     ``variables`` (reserved names renamed) and their rules
    mapping.py       one egg dict -> BlueprintCreate + report (refused if anything blocks it)
    exporting.py     a blueprint -> a ``PTDL_v2`` or ``PLCN_v3`` egg; import(export(b)) == b
    importing.py     the service: map, then create or update (same egg uuid, else same name)

docs/templates.md says what is mapped, changed and refused, and why.
"""
