// Admin pages for blueprints, servers and the audit trail. Everything here acts through the
// JSON API (app.js's api(), the session's CSRF token) and decides nothing about access: the
// pages are administrators' only, and the API refuses on its own whatever is sent.
// User strings are only ever inserted as text.
"use strict";

// ---- shared helpers -------------------------------------------------------------------

function el(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (className) node.className = className;
  return node;
}

function show(node, text) {
  if (!node) return;
  node.textContent = text; node.hidden = false;
}

function resetErrors(form) {
  for (const slot of form.querySelectorAll("[data-error-for], [data-slot], [data-form-error]")) {
    slot.textContent = ""; slot.hidden = true;
  }
  for (const input of form.querySelectorAll("[aria-invalid]")) input.removeAttribute("aria-invalid");
}

// The API's error details, each next to its field: a detail's ``loc`` ("variables", 0,
// "regex") is looked up whole, then shorter, in ``slotFor``; what has no slot goes on top.
function placeErrors(form, result, slotFor) {
  const error = result.data?.error;
  const general = form.querySelector("[data-form-error]");
  const leftover = [];
  for (const detail of error?.details || []) {
    const loc = (detail.loc || []).filter((part) => part !== "body");
    let slot = null;
    for (let length = loc.length; length > 0 && !slot; length -= 1) slot = slotFor(loc.slice(0, length));
    if (slot) {
      slot.textContent = slot.hidden ? detail.msg : `${slot.textContent} ${detail.msg}`;
      slot.hidden = false;
      const input = slot.parentElement?.querySelector("input, select, textarea");
      input?.setAttribute("aria-invalid", "true");
    } else {
      leftover.push(loc.length ? `${loc.join(".")}: ${detail.msg}` : detail.msg);
    }
  }
  const message = error?.message || `The request failed (${result.status}).`;
  show(general, leftover.length ? `${message}: ${leftover.join("; ")}` : message);
}

function bySlotName(form) {
  return (loc) => form.querySelector(`[data-error-for="${CSS.escape(loc.join("."))}"]`);
}

async function sendFile(path, formData) {
  const headers = { Accept: "application/json" };
  const token = document.querySelector('meta[name="csrf-token"]')?.content;
  if (token) headers["X-CSRF-Token"] = token;
  const response = await fetch(path, { method: "POST", headers, credentials: "same-origin", body: formData });
  const data = await response.json().catch(() => null);
  return { ok: response.ok, status: response.status, data };
}

// ---- blueprints: egg import ----------------------------------------------------------

const OUTCOMES = ["mapped", "changed", "warning", "ignored", "refused"];

function reportTable(items) {
  const table = el("table", undefined, "list report");
  const head = table.createTHead().insertRow();
  for (const title of ["Part", "Outcome", "Detail"]) {
    const th = el("th", title); th.scope = "col"; head.append(th);
  }
  const body = table.createTBody();
  for (const item of items) {
    const row = body.insertRow();
    row.dataset.outcome = item.outcome;
    row.insertCell().append(el("code", item.field));
    row.insertCell().append(el("span", item.outcome, `outcome outcome-${item.outcome}`));
    row.insertCell().textContent = item.detail;
  }
  return table;
}

function showImported(box, results) {
  box.replaceChildren();
  for (const result of results) {
    const section = el("section", undefined, "imported");
    const title = el("h3");
    title.append(`${result.created ? "Created" : "Updated"} blueprint `);
    const link = el("a", result.blueprint.name);
    link.href = `/admin/blueprints/${result.blueprint.id}`;
    title.append(link, ` (${result.version})`);
    const counts = OUTCOMES.map((outcome) => [outcome, result.report.filter((i) => i.outcome === outcome).length])
      .filter(([, n]) => n > 0).map(([outcome, n]) => `${n} ${outcome}`).join(", ");
    section.append(title, el("p", counts || "Nothing to report.", "muted"), reportTable(result.report));
    box.append(section);
  }
  box.hidden = false;
}

function showRefused(box, result) {
  // 400 with each refused egg's report in details (loc: eggs, index, part).
  box.replaceChildren(el("h3", "Nothing was imported"));
  const items = (result.data?.error?.details || []).map((d) => ({
    field: (d.loc || []).slice(2).join(".") || (d.loc || []).join("."),
    outcome: "refused", detail: d.msg,
  }));
  box.append(el("p", result.data?.error?.message || `The import failed (${result.status}).`, "form-error"));
  if (items.length) box.append(reportTable(items));
  box.hidden = false;
}

function eggImport() {
  const form = document.getElementById("egg-import");
  if (!form) return;
  const input = form.querySelector('input[type="file"]');
  const zone = form.querySelector("[data-dropzone]");
  const hint = form.querySelector("[data-dropzone-hint]");
  const box = document.querySelector("[data-import-report]");
  const progress = form.querySelector("[data-progress]");
  const chosen = () => { if (input.files.length) hint.textContent = `Chosen: ${input.files[0].name}`; };
  input.addEventListener("change", chosen);
  for (const type of ["dragenter", "dragover"]) {
    zone.addEventListener(type, (event) => { event.preventDefault(); zone.classList.add("dragging"); });
  }
  for (const type of ["dragleave", "drop"]) {
    zone.addEventListener(type, () => zone.classList.remove("dragging"));
  }
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    if (event.dataTransfer?.files?.length) { input.files = event.dataTransfer.files; chosen(); }
  });
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    resetErrors(form);
    if (!input.files.length) return show(form.querySelector('[data-error-for="file"]'), "Choose an egg file first.");
    const button = form.querySelector("button[type=submit]");
    const body = new FormData();
    body.append("file", input.files[0], input.files[0].name);
    const query = form.elements.accept_unknown_rules.checked ? "?accept_unknown_rules=true" : "";
    button.disabled = true;
    show(progress, `Importing ${input.files[0].name}…`);
    try {
      const result = await sendFile(`/api/v1/blueprints/import${query}`, body);
      if (result.ok) showImported(box, result.data.data);
      else if (result.status === 400) showRefused(box, result);
      else placeErrors(form, result, () => null);
    } finally {
      button.disabled = false; progress.hidden = true;
    }
  });
}

// ---- blueprints: the form ------------------------------------------------------------

// What BlueprintCreate takes: the rest of BlueprintOut (id, egg_uuid, created_at) is not sent.
const BLUEPRINT_KEYS = ["name", "description", "images", "image_command", "startup", "stop",
  "stop_timeout_seconds", "install", "variables", "read_only_root", "file_denylist",
  "config_files", "startup_done", "features", "author"];
const VARIABLE_FIELDS = ["env", "name", "type", "description", "default", "regex", "min", "max", "options"];
const VARIABLE_FLAGS = ["required", "user_viewable", "user_editable"];
const SHOWN_RULES = new Set([...VARIABLE_FIELDS, ...VARIABLE_FLAGS]);
let variableCount = 0;

function addVariable(list, variable) {
  const template = document.getElementById("variable-template");
  const fieldset = template.content.firstElementChild.cloneNode(true);
  const number = (variableCount += 1);
  for (const input of fieldset.querySelectorAll("[data-field]")) {
    input.id = `var-${number}-${input.dataset.field}`;
    const label = fieldset.querySelector(`label[data-for="${input.dataset.field}"]`);
    if (label) label.htmlFor = input.id;
  }
  // Rules the form does not show are kept as they are (sent back with the variable).
  fieldset._original = variable || {};
  const value = (key) => variable?.[key];
  for (const key of VARIABLE_FIELDS) {
    const input = fieldset.querySelector(`[data-field="${key}"]`);
    const current = value(key);
    if (key === "options") input.value = (current || []).join(", ");
    else if (key === "type") input.value = current || "string";
    else input.value = current === undefined || current === null ? "" : String(current);
  }
  for (const key of VARIABLE_FLAGS) {
    fieldset.querySelector(`[data-field="${key}"]`).checked = key === "user_viewable" ? value(key) !== false : Boolean(value(key));
  }
  const more = Object.entries(variable || {}).filter(([key, v]) => !SHOWN_RULES.has(key) && v !== null && v !== false);
  if (more.length) {
    show(fieldset.querySelector("[data-more-rules]"),
      `Also checked (kept as imported): ${more.map(([k, v]) => `${k} ${JSON.stringify(v)}`).join("; ")}`);
  }
  const title = fieldset.querySelector("[data-variable-title]");
  const rename = () => { title.textContent = fieldset.querySelector('[data-field="env"]').value || "New variable"; };
  fieldset.querySelector('[data-field="env"]').addEventListener("input", rename);
  rename();
  fieldset.querySelector("[data-remove-variable]").addEventListener("click", () => fieldset.remove());
  list.append(fieldset);
  return fieldset;
}

function numberOrNull(text) {
  const trimmed = text.trim();
  return trimmed === "" ? null : Number(trimmed);
}

function readVariable(fieldset) {
  const field = (key) => fieldset.querySelector(`[data-field="${key}"]`);
  const variable = { ...fieldset._original };
  for (const key of ["env", "name", "type", "description", "default"]) variable[key] = field(key).value;
  variable.regex = field("regex").value.trim() || null;
  variable.min = numberOrNull(field("min").value);
  variable.max = numberOrNull(field("max").value);
  const options = field("options").value.split(",").map((o) => o.trim()).filter(Boolean);
  variable.options = options.length ? options : null;
  for (const key of VARIABLE_FLAGS) variable[key] = field(key).checked;
  return variable;
}

function fillBlueprint(form, blueprint) {
  const f = form.elements;
  f.name.value = blueprint.name || "";
  f.description.value = blueprint.description || "";
  f.images.value = (blueprint.images || []).map((i) => `${i.name} = ${i.image}`).join("\n");
  f.image_command.checked = Boolean(blueprint.image_command);
  f.startup.value = blueprint.startup || "";
  f.stop_type.value = blueprint.stop?.type || "command";
  f.stop_value.value = blueprint.stop?.value || "stop";
  f.read_only_root.checked = blueprint.read_only_root !== false;
  const install = blueprint.install || {};
  f.install_image.value = install.image || "";
  f.install_entrypoint.value = install.entrypoint || "/bin/sh";
  f.install_volume_path.value = install.volume_path || "/home/container";
  f.install_script.value = install.script || "";
  f.install_needs_root.checked = Boolean(install.needs_root);
  const list = form.querySelector("[data-variables]");
  list.replaceChildren();
  for (const variable of blueprint.variables || []) addVariable(list, variable);
}

function readImages(text) {
  return text.split("\n").map((line) => line.trim()).filter(Boolean).map((line, index) => {
    const cut = line.lastIndexOf("=");
    if (cut < 0) return { name: index === 0 ? "default" : `image ${index + 1}`, image: line };
    return { name: line.slice(0, cut).trim(), image: line.slice(cut + 1).trim() };
  });
}

function readBlueprint(form, original) {
  const f = form.elements;
  const body = {};
  for (const key of BLUEPRINT_KEYS) if (original[key] !== undefined && original[key] !== null) body[key] = original[key];
  body.name = f.name.value;
  body.description = f.description.value;
  body.images = readImages(f.images.value);
  body.image_command = f.image_command.checked;
  body.startup = f.startup.value;
  body.stop = { type: f.stop_type.value, value: f.stop_value.value };
  body.read_only_root = f.read_only_root.checked;
  if (f.install_image.value.trim() || f.install_script.value.trim()) {
    body.install = {
      ...(original.install || {}),
      image: f.install_image.value.trim(),
      entrypoint: f.install_entrypoint.value.trim() || "/bin/sh",
      volume_path: f.install_volume_path.value,
      script: f.install_script.value,
      needs_root: f.install_needs_root.checked,
    };
  } else {
    body.install = null;
  }
  body.variables = [...form.querySelectorAll("[data-variables] > fieldset")].map(readVariable);
  return body;
}

function blueprintForm() {
  const form = document.getElementById("blueprint-form");
  if (!form) return;
  const original = JSON.parse(document.getElementById("blueprint-data").textContent) || {};
  fillBlueprint(form, original);
  const list = form.querySelector("[data-variables]");
  form.querySelector("[data-add-variable]").addEventListener("click", () => {
    addVariable(list, null).querySelector("input").focus();
  });
  const slots = bySlotName(form);
  const slotFor = (loc) => {
    if (loc[0] === "variables" && typeof loc[1] === "number") {
      const fieldset = list.children[loc[1]];
      if (!fieldset) return null;
      return fieldset.querySelector(`[data-slot="${CSS.escape(loc.slice(2).join("."))}"]`);
    }
    return slots(loc);
  };
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    resetErrors(form);
    form.querySelector("[data-saved]").hidden = true;
    const id = form.dataset.blueprintId;
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    try {
      const body = readBlueprint(form, original);
      const result = id
        ? await api("PUT", `/api/v1/blueprints/${id}`, body)
        : await api("POST", "/api/v1/blueprints", body);
      if (!result.ok) return placeErrors(form, result, slotFor);
      if (!id) { window.location.assign(`/admin/blueprints/${result.data.id}`); return; }
      Object.assign(original, result.data);
      show(form.querySelector("[data-saved]"), "Saved. Servers pick the change up at their next start.");
    } finally {
      button.disabled = false;
    }
  });
}

function blueprintDelete() {
  const button = document.querySelector("[data-delete-blueprint]");
  const form = document.getElementById("blueprint-form");
  if (!button || !form) return;
  const dialog = document.querySelector("[data-delete-blueprint-dialog]");
  button.addEventListener("click", () => dialog.showModal());
  dialog.querySelector("[data-delete-cancel]").addEventListener("click", () => dialog.close());
  dialog.querySelector("form").addEventListener("submit", async (event) => {
    event.preventDefault();
    dialog.close();
    const result = await api("DELETE", `/api/v1/blueprints/${form.dataset.blueprintId}`);
    if (result.ok) { window.location.assign("/admin/blueprints"); return; }
    show(document.querySelector("[data-delete-error]"), result.data?.error?.message || `The delete failed (${result.status}).`);
  });
}

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

function watchInstall(panel, server) {
  panel.querySelector("[data-progress-name]").textContent = server.name;
  panel.querySelector("[data-progress-console]").href = `/servers/${server.id}`;
  const state = panel.querySelector("[data-progress-state]");
  const lines = panel.querySelector("[data-progress-lines]");
  panel.hidden = false;
  const tick = async () => {
    const result = await api("GET", `/api/v1/servers/${server.id}`);
    if (!result.ok) { state.textContent = `unknown (${result.status})`; return; }
    state.textContent = result.data.state.replace("_", " ");
    state.className = `state state-${result.data.state}`;
    const output = result.data.install?.last_lines;
    if (output?.length) { lines.textContent = output.join("\n"); lines.hidden = false; }
    panel.dataset.state = result.data.state;
    if (["provisioning", "installing"].includes(result.data.state)) setTimeout(tick, 1000);
  };
  tick();
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

// ---- audit: the chain's state --------------------------------------------------------

async function chainStatus() {
  const status = document.querySelector("[data-chain-status]");
  if (!status) return;
  const result = await api("GET", "/api/v1/audit/verify");
  if (!result.ok) {
    status.textContent = `The chain could not be checked: ${result.data?.error?.message || result.status}`;
    status.dataset.chain = "unknown";
    return;
  }
  const { intact, rows, problems } = result.data;
  status.dataset.chain = intact ? "intact" : "broken";
  status.textContent = intact
    ? `Hash chain intact: ${rows} entries verified.`
    : `Hash chain BROKEN: ${problems.length} problem(s) in ${rows} entries. See docs/audit.md.`;
  const list = document.querySelector("[data-chain-problems]");
  list.replaceChildren(...problems.map((problem) => el("li", problem)));
  list.hidden = intact;
}

document.addEventListener("DOMContentLoaded", () => {
  eggImport(); blueprintForm(); blueprintDelete(); serverActions(); serverForm(); chainStatus();
});
