// StellarStack panel: the administration pages. Forms and buttons carry the API call they
// make (data-api="METHOD /api/v1/..."), written by the server; this file only sends it with
// the session's CSRF token (api() in app.js) and shows the answer. The API decides.
"use strict";

const FLASH = "stellar-admin-flash";

// A form's fields as the API's JSON: numbers as numbers, check boxes as booleans, and an
// empty field marked data-optional left out (the API's default applies).
function adminBody(form) {
  const body = {};
  for (const field of form.elements) {
    if (!field.name || field.disabled) continue;
    if (field.type === "checkbox") { body[field.name] = field.checked; continue; }
    const text = field.value.trim();
    if (text === "" && field.hasAttribute("data-optional")) continue;
    body[field.name] = field.type === "number" && text !== "" ? Number(text) : field.value;
  }
  return body;
}

// The API's error on the form (app.js), and the details that name no field of it (a rule
// over several fields, such as a port range) said on top instead of only "invalid ...".
function showFormError(form, result) {
  showError(form, result);
  const loose = (result.data?.error?.details || []).filter((detail) => {
    const field = detail.loc?.[detail.loc.length - 1];
    return !field || !form.querySelector(`[data-error-for="${CSS.escape(String(field))}"]`);
  });
  if (loose.length) {
    const general = form.querySelector("[data-form-error]");
    general.textContent = loose.map((detail) => detail.msg).join("; ");
    general.hidden = false;
  }
}

function statusLine() { return document.querySelector("[data-admin-status]"); }
function errorLine() { return document.querySelector("[data-admin-error]"); }

// After a change the page is read again from the server; what was done is said on it.
function done(element, result) {
  const message = element.dataset.done;
  if (message) sessionStorage.setItem(FLASH, message);
  const then = element.dataset.then;
  if (then === "node" && result.data?.id) {
    window.location.assign(`/admin/nodes/${encodeURIComponent(result.data.id)}`);
  } else if (then && then.startsWith("/")) {
    window.location.assign(then);
  } else {
    window.location.reload();
  }
}

function showFlash() {
  const message = sessionStorage.getItem(FLASH);
  if (!message) return;
  sessionStorage.removeItem(FLASH);
  const line = statusLine();
  line.textContent = message;
  line.hidden = false;
}

// Asks with the page's <dialog> (not window.confirm): resolves true when confirmed.
function confirmed(text) {
  const dialog = document.querySelector("[data-confirm-dialog]");
  dialog.querySelector("[data-confirm-text]").textContent = text;
  dialog.returnValue = "";
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
    dialog.showModal();
    dialog.querySelector("[data-confirm-ok]").focus();
  });
}

function split(call) {
  const space = call.indexOf(" ");
  return [call.slice(0, space), call.slice(space + 1)];
}

function apiForms() {
  for (const form of document.querySelectorAll("form[data-api]")) {
    const [method, path] = split(form.dataset.api);
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const button = form.querySelector("button[type=submit]");
      clearErrors(form);
      button.disabled = true;
      try {
        const result = await api(method, path, adminBody(form));
        if (!result.ok) {
          showFormError(form, result);
          form.querySelector("[aria-invalid]")?.focus();
          return;
        }
        done(form, result);
      } finally { button.disabled = false; }
    });
  }
}

function apiButtons() {
  for (const button of document.querySelectorAll("button[data-api]")) {
    const [method, path] = split(button.dataset.api);
    button.addEventListener("click", async () => {
      const error = errorLine();
      error.hidden = true;
      if (button.dataset.confirm && !(await confirmed(button.dataset.confirm))) return;
      button.disabled = true;
      try {
        const body = button.dataset.body ? JSON.parse(button.dataset.body) : undefined;
        const result = await api(method, path, body);
        if (!result.ok) {
          error.textContent = result.data?.error?.message || `The request failed (${result.status}).`;
          error.hidden = false;
          error.scrollIntoView({ block: "nearest" });
          return;
        }
        done(button, result);
      } finally { button.disabled = false; }
    });
  }
}

function copyButtons() {
  for (const button of document.querySelectorAll("button[data-copy]")) {
    const source = document.querySelector(button.dataset.copy);
    const label = button.textContent;
    button.addEventListener("click", async () => {
      try {
        await navigator.clipboard.writeText(source.textContent);
        button.textContent = "Copied";
      } catch {
        // No clipboard (an http:// origin other than localhost): select it for Ctrl+C.
        window.getSelection().selectAllChildren(source);
        button.textContent = "Selected: press Ctrl+C";
      }
      setTimeout(() => { button.textContent = label; }, 2500);
    });
  }
}

document.addEventListener("DOMContentLoaded", () => {
  showFlash(); apiForms(); apiButtons(); copyButtons();
});
