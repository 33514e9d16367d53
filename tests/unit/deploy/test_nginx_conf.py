"""The nginx sample is valid for the nginx Debian ships (``nginx -t`` with a throwaway cert)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from node_agent.tls import generate_identity
from tests.conftest import require_tool

SAMPLE = Path(__file__).resolve().parents[3] / "deploy" / "nginx" / "stellar.conf"
LIVE = "/etc/letsencrypt/live/panel.example.com"


def test_nginx_accepts_the_sample(tmp_path: Path) -> None:
    require_tool("nginx", "nginx")
    identity = generate_identity("panel.example.com", tmp_path / "tls")
    site = tmp_path / "site.conf"
    site.write_text(
        SAMPLE.read_text(encoding="utf-8")
        .replace(f"{LIVE}/fullchain.pem", str(identity.cert_file))
        .replace(f"{LIVE}/privkey.pem", str(identity.key_file)),
        encoding="utf-8",
    )
    main = tmp_path / "nginx.conf"
    main.write_text(
        f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\nevents {{}}\n"
        f"http {{\n    include {site};\n}}\n",
        encoding="utf-8",
    )
    result = subprocess.run(
        ["nginx", "-t", "-c", str(main)], capture_output=True, text=True, timeout=30, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "X-Forwarded-For $remote_addr" in site.read_text(encoding="utf-8")
