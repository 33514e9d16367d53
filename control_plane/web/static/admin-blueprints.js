// The admin blueprint pages: the egg import and its report, the blueprint form, delete.
// Helpers (el, show, placeErrors …) come from admin-catalog.js, loaded before this file.
"use strict";

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
  // Each detail is a part of a refused egg: its outcome is in the type ("egg_refused" …).
  const items = (result.data?.error?.details || []).map((d) => ({
    field: (d.loc || []).slice(2).join(".") || (d.loc || []).join("."),
    outcome: String(d.type || "").startsWith("egg_") ? d.type.slice(4) : "refused",
    detail: d.msg,
  }));
  box.append(el("p", result.data?.error?.message || `The import failed (${result.status}).`, "form-error"));
  // Why first: the refused parts, then what would have been done with the rest.
  items.sort((a, b) => Number(b.outcome === "refused") - Number(a.outcome === "refused"));
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

document.addEventListener("DOMContentLoaded", () => { eggImport(); blueprintForm(); blueprintDelete(); });
