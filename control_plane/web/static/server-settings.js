// A server's settings page: rename, reinstall (after a confirmation) and the SFTP details.
"use strict";

function settingsPage() {
  const root = document.querySelector("[data-settings]");
  if (!root) return;
  const base = `/api/v1/servers/${root.dataset.serverId}`;

  const rename = document.getElementById("rename-form");
  submitting(rename, async (body) => {
    const result = await api("PATCH", base, { name: body.name });
    if (!result.ok) return showError(rename, result);
    // The heading and the title follow the new name (as text).
    document.querySelector("main h1").textContent = result.data.name;
    document.title = `Settings · ${result.data.name} · StellarStack`;
    rename.querySelector("[data-rename-status]").textContent = `Renamed to “${result.data.name}”.`;
  });

  const reinstall = root.querySelector("[data-reinstall]");
  if (reinstall) {
    const problem = root.querySelector("[data-reinstall-error]");
    const status = root.querySelector("[data-reinstall-status]");
    reinstall.addEventListener("click", async () => {
      problem.hidden = true;
      const sure = await confirmAction(
        "Reinstall this server? Its install step runs again and may replace files. " +
        "The server must be stopped first.", "Reinstall");
      if (!sure) return;
      reinstall.disabled = true;
      try {
        const result = await api("POST", `${base}/reinstall`);
        if (!result.ok) {
          problem.textContent = result.data?.error?.message || `The request failed (${result.status}).`;
          problem.hidden = false;
          return;
        }
        status.textContent = result.data.state === "installing"
          ? "Reinstalling: follow it on the Console tab." : "Reinstalled.";
      } finally { reinstall.disabled = false; }
    });
  }

  if (root.hasAttribute("data-sftp")) sftpDetails(root, base);
}

async function sftpDetails(root, base) {
  const status = root.querySelector("[data-sftp-status]");
  const result = await api("GET", `${base}/sftp`);
  if (!result.ok) {
    status.textContent = result.data?.error?.message || `The details could not be read (${result.status}).`;
    return;
  }
  for (const field of root.querySelectorAll("[data-sftp]")) {
    field.textContent = String(result.data[field.dataset.sftp]);
  }
  status.textContent = "";
  root.querySelector("[data-sftp-details]").hidden = false;
}

document.addEventListener("DOMContentLoaded", settingsPage);
