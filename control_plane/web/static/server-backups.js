// A server's backups page: list, create (with progress), download, restore, lock, delete.
// It draws only the controls the page was given (data-may-*); the API decides each action.
"use strict";

const POLL_MS = 1500;

function formatBytes(bytes) {
  if (bytes === null || bytes === undefined) return "–";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = bytes; let unit = 0;
  while (value >= 1024 && unit < units.length - 1) { value /= 1024; unit += 1; }
  return `${value.toFixed(unit === 0 ? 0 : 1)} ${units[unit]}`;
}

function cell(row, ...children) {
  const td = document.createElement("td");
  td.append(...children);
  row.append(td);
  return td;
}

function button(label, handler, className) {
  const b = document.createElement("button");
  b.type = "button"; b.textContent = label;
  if (className) b.className = className;
  b.addEventListener("click", handler);
  return b;
}

function backupsPage() {
  const root = document.querySelector("[data-backups]");
  if (!root) return;
  const base = `/api/v1/servers/${root.dataset.serverId}/backups`;
  const may = (name) => root.hasAttribute(`data-may-${name}`);
  const table = document.getElementById("backup-table");
  const empty = root.querySelector("[data-backups-empty]");
  const status = root.querySelector("[data-backups-status]");
  const problem = root.querySelector("[data-backups-error]");
  let timer = null;

  const say = (text) => { status.textContent = text; };
  const fail = (result) => {
    problem.textContent = result.data?.error?.message || `The request failed (${result.status}).`;
    problem.hidden = false;
  };

  function row(backup) {
    const tr = document.createElement("tr");
    tr.dataset.backupId = backup.id;
    cell(tr, backup.name);
    const state = cell(tr);
    const label = document.createElement("span");
    label.className = `state backup-${backup.status}`;
    label.dataset.backupState = backup.status;
    label.textContent = backup.status === "running" ? "being made…" : backup.status;
    state.append(label);
    if (backup.status === "running") {
      const bar = document.createElement("progress");
      bar.setAttribute("aria-label", `Making ${backup.name}`);
      state.append(" ", bar);
    }
    if (backup.locked) {
      const badge = document.createElement("span");
      badge.className = "badge"; badge.textContent = "locked";
      state.append(" ", badge);
    }
    if (backup.reason) {
      const why = document.createElement("div");
      why.className = "muted"; why.textContent = backup.reason;
      state.append(why);
    }
    cell(tr, formatBytes(backup.size_bytes));
    cell(tr, timeElement(backup.created_at));
    const actions = cell(tr);
    actions.className = "row-actions";
    const done = backup.status === "completed";
    if (may("download") && done) {
      const link = document.createElement("a");
      link.href = `${base}/${backup.id}/download`;
      link.textContent = "Download";
      link.setAttribute("download", "");
      actions.append(link);
    }
    if (may("restore") && done) actions.append(button("Restore…", () => restore(backup)));
    if (may("delete") && backup.status !== "running") {
      actions.append(button(backup.locked ? "Unlock" : "Lock", () => lock(backup), "secondary"));
      if (!backup.locked) actions.append(button("Delete…", () => remove(backup), "danger"));
    }
    return tr;
  }

  async function load() {
    clearTimeout(timer);
    const result = await api("GET", base);
    if (!result.ok) return fail(result);
    const backups = result.data.data;
    table.tBodies[0].replaceChildren(...backups.map(row));
    table.hidden = backups.length === 0;
    empty.hidden = backups.length > 0;
    // Progress: the list asks the node about running backups; look again until they end.
    if (backups.some((b) => b.status === "running")) timer = setTimeout(load, POLL_MS);
    else if (status.dataset.creating) { delete status.dataset.creating; say("Backup finished."); }
  }

  async function restore(backup) {
    problem.hidden = true;
    const sure = await confirmAction(
      `Restore “${backup.name}”? The server's files are replaced by the backup's. ` +
      "The server must be stopped (offline or crashed) first.", "Restore");
    if (!sure) return;
    const result = await api("POST", `${base}/${backup.id}/restore`);
    if (!result.ok) return fail(result);
    say(`Restoring “${backup.name}”…`);
    root.dataset.restoring = backup.id;
    for (;;) {
      await new Promise((resolve) => setTimeout(resolve, POLL_MS));
      const now = await api("GET", `${base}/${backup.id}`);
      if (!now.ok) return fail(now);
      const outcome = now.data.restore;
      if (outcome && outcome.status !== "running") {
        delete root.dataset.restoring;
        if (outcome.status === "completed") say(`Restored “${backup.name}”.`);
        else fail({ data: { error: { message: `The restore failed: ${outcome.reason || "unknown reason"}` } } });
        return;
      }
    }
  }

  async function lock(backup) {
    problem.hidden = true;
    const result = await api("PATCH", `${base}/${backup.id}`, { locked: !backup.locked });
    if (!result.ok) return fail(result);
    say(result.data.locked ? `Locked “${backup.name}”.` : `Unlocked “${backup.name}”.`);
    await load();
  }

  async function remove(backup) {
    problem.hidden = true;
    const sure = await confirmAction(`Delete “${backup.name}”? It cannot be brought back.`, "Delete");
    if (!sure) return;
    const result = await api("DELETE", `${base}/${backup.id}`);
    if (!result.ok) return fail(result);
    say(`Deleted “${backup.name}”.`);
    await load();
  }

  const form = document.getElementById("backup-form");
  if (form) {
    submitting(form, async (body) => {
      problem.hidden = true;
      const result = await api("POST", base, body.name ? { name: body.name } : {});
      if (!result.ok) return showError(form, result);
      form.reset();
      status.dataset.creating = "1";
      say(`Making “${result.data.name}”…`);
      await load();
    });
  }
  load();
}

document.addEventListener("DOMContentLoaded", backupsPage);
