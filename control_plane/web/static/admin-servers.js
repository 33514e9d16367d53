// The admin server pages: the list's actions (suspend, reinstall, delete with the name typed)
// and the create form with its install progress. Helpers come from admin-catalog.js.
"use strict";

// ---- servers: the list's actions -----------------------------------------------------

function serverActions() {
  const table = document.getElementById("admin-server-table");
  if (!table) return;
  const status = document.querySelector("[data-action-status]");
  const failure = document.querySelector("[data-action-error]");
  const dialog = document.querySelector("[data-delete-dialog]");
  const run = async (row, action) => {
    failure.hidden = true;
    const id = row.dataset.serverId;
    show(status, `${action} ${row.dataset.serverName}…`);
    const result = action === "delete"
      ? await api("DELETE", `/api/v1/servers/${id}`)
      : await api("POST", `/api/v1/servers/${id}/${action}`);
    if (!result.ok) {
      status.hidden = true;
      show(failure, `${row.dataset.serverName}: ${result.data?.error?.message || `failed (${result.status})`}`);
      return false;
    }
    window.location.reload();
    return true;
  };
  let pending = null;
  table.addEventListener("click", async (event) => {
    const button = event.target.closest("[data-server-action]");
    if (!button) return;
    const row = button.closest("tr");
    const action = button.dataset.serverAction;
    if (action !== "delete") {
      button.disabled = true;
      try { await run(row, action); } finally { button.disabled = false; }
      return;
    }
    pending = row;
    dialog.querySelector("[data-delete-name]").textContent = row.dataset.serverName;
    dialog.querySelector("input").value = "";
    resetErrors(dialog);
    dialog.showModal();
  });
  dialog.querySelector("[data-delete-cancel]").addEventListener("click", () => dialog.close());
  dialog.querySelector("form").addEventListener("submit", async (event) => {
    event.preventDefault();
    resetErrors(dialog);
    if (dialog.querySelector("input").value !== pending.dataset.serverName) {
      show(dialog.querySelector("[data-form-error]"), "The name does not match: nothing was deleted.");
      return;
    }
    const button = dialog.querySelector("[data-delete-confirm]");
    button.disabled = true;
    try {
      if (!(await run(pending, "delete"))) dialog.close();
    } finally { button.disabled = false; }
  });
}

// ---- servers: create one for a user --------------------------------------------------

function variableInputs(box, blueprint) {
  box.replaceChildren();
  if (!blueprint.variables.length) { box.append(el("p", "This blueprint has no variables.", "muted")); return; }
  for (const variable of blueprint.variables) {
    const id = `sv-var-${variable.env}`;
    const label = el("label", variable.name);
    label.htmlFor = id;
    label.append(" ", el("code", variable.env, "muted"));
    const input = el("input");
    input.id = id; input.dataset.variable = variable.env; input.value = variable.default || "";
    const rules = [variable.required ? "required" : null, variable.regex ? `pattern ${variable.regex}` : null,
      variable.options ? `one of ${variable.options.join(", ")}` : null, variable.type !== "string" ? variable.type : null]
      .filter(Boolean).join("; ");
    // One box per variable: its error slot finds its input (placeErrors).
    const item = el("div", undefined, "server-variable");
    item.append(label, input);
    if (variable.description || rules) item.append(el("p", [variable.description, rules].filter(Boolean).join(" — "), "muted hint"));
    const slot = el("p", "", "field-error");
    slot.dataset.errorFor = `variables.${variable.env}`; slot.hidden = true;
    item.append(slot);
    box.append(item);
  }
}

function fillSelect(select, items, empty) {
  select.replaceChildren();
  if (!items.length) { const option = el("option", empty); option.value = ""; select.append(option); }
  for (const [value, text] of items) { const option = el("option", text); option.value = value; select.append(option); }
}

// The install as it happens: the console socket's "install output" lines and "state"
// changes (the events the console page shows), then the server's record for the final
// state and the installer's last lines. Without the socket, the record is read every 2 s.
const SETTING_UP = ["provisioning", "installing"];

function watchInstall(panel, server) {
  panel.querySelector("[data-progress-name]").textContent = server.name;
  panel.querySelector("[data-progress-console]").href = `/servers/${server.id}`;
  const state = panel.querySelector("[data-progress-state]");
  const lines = panel.querySelector("[data-progress-lines]");
  panel.hidden = false;
  let socket = null;
  let done = false;
  const showState = (value) => {
    state.textContent = value.replace("_", " ");
    state.className = `state state-${value}`;
  };
  const settle = async () => {
    const result = await api("GET", `/api/v1/servers/${server.id}`);
    if (!result.ok) { state.textContent = `unknown (${result.status})`; return; }
    showState(result.data.state);
    const output = result.data.install?.last_lines;
    if (output?.length) { lines.textContent = output.join("\n"); lines.hidden = false; }
    if (SETTING_UP.includes(result.data.state)) {
      if (!socket) setTimeout(settle, 2000);
      return;
    }
    done = true;
    socket?.close();
    panel.dataset.state = result.data.state;
  };
  const scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
  socket = new WebSocket(`${scheme}//${window.location.host}/api/v1/servers/${encodeURIComponent(server.id)}/console`);
  socket.addEventListener("open", settle);  // it may have finished before the socket opened
  socket.addEventListener("message", (message) => {
    let frame;
    try { frame = JSON.parse(message.data); } catch { return; }
    const arg = Array.isArray(frame?.args) ? frame.args[0] : undefined;
    if (frame?.event === "install output") {
      lines.textContent += `${String(arg)}\n`; lines.hidden = false;
    } else if ((frame?.event === "state" || frame?.event === "status") && typeof arg === "string") {
      showState(arg);
      if (!SETTING_UP.includes(arg)) settle();
    }
  });
  socket.addEventListener("close", () => {
    socket = null;
    if (!done) settle();
  });
}

function serverForm() {
  const form = document.getElementById("server-form");
  if (!form) return;
  const f = form.elements;
  const nodes = JSON.parse(document.getElementById("node-choices").textContent);
  const ports = () => {
    const node = nodes.find((n) => n.id === f.node_id.value);
    fillSelect(f.allocation_id, (node?.free || []).map((p) => [p.id, p.label]), "No free port on this node");
  };
  f.node_id.addEventListener("change", ports);
  ports();
  for (const radio of form.querySelectorAll('input[name="placement"]')) {
    radio.addEventListener("change", () => {
      for (const part of form.querySelectorAll("[data-placement]")) part.hidden = part.dataset.placement !== f.placement.value;
    });
  }
  const variables = form.querySelector("[data-server-variables]");
  f.blueprint_id.addEventListener("change", async () => {
    if (!f.blueprint_id.value) return;
    const result = await api("GET", `/api/v1/blueprints/${f.blueprint_id.value}`);
    if (!result.ok) return placeErrors(form, result, () => null);
    fillSelect(f.image, result.data.images.map((i) => [i.image, `${i.name} (${i.image})`]), "");
    f.image.disabled = false;
    variableInputs(variables, result.data);
  });
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    resetErrors(form);
    const body = {
      name: f.name.value, owner_id: f.owner_id.value || null, blueprint_id: f.blueprint_id.value || null,
      memory_mib: Number(f.memory_mib.value), swap_mib: Number(f.swap_mib.value),
      cpu_percent: Number(f.cpu_percent.value), disk_mib: Number(f.disk_mib.value),
      pids_limit: Number(f.pids_limit.value), variables: {},
    };
    if (f.image.value) body.image = f.image.value;
    if (f.placement.value === "node") {
      body.node_id = f.node_id.value;
      if (f.allocation_id.value) body.allocation_id = f.allocation_id.value;
    } else {
      body.location_id = f.location_id.value;
    }
    for (const input of variables.querySelectorAll("[data-variable]")) body.variables[input.dataset.variable] = input.value;
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    button.textContent = "Creating…";
    try {
      const result = await api("POST", "/api/v1/servers", body);
      if (!result.ok) return placeErrors(form, result, bySlotName(form));
      form.hidden = true;
      watchInstall(document.querySelector("[data-install-progress]"), result.data);
    } finally {
      button.disabled = false; button.textContent = "Create server";
    }
  });
}

document.addEventListener("DOMContentLoaded", () => { serverActions(); serverForm(); });
