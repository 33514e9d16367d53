"""Host provisioning (``stellar-agent install``) is apart from the agent's runtime."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

AGENT_PACKAGE = Path(__file__).resolve().parents[3] / "node_agent"


def test_loading_the_agent_app_loads_no_provisioning_module() -> None:
    probe = (
        "import sys, node_agent.app\n"
        "print([m for m in sys.modules if m.startswith('node_agent.provision')])"
    )
    # Run from the repository, so that ``-c`` imports this tree's package.
    result = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=AGENT_PACKAGE.parent,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert result.stdout.strip() == "[]"


def test_only_the_command_line_imports_provisioning() -> None:
    importers = []
    for path in sorted(AGENT_PACKAGE.rglob("*.py")):
        relative = path.relative_to(AGENT_PACKAGE)
        if relative.parts[0] == "provision":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            if any(name.startswith("node_agent.provision") for name in names):
                importers.append(str(relative))
    assert importers == ["__main__.py"]
