// StellarStack panel: the browser side. It only talks to the JSON API (same origin, the
// session cookie, the CSRF token on unsafe requests); it decides nothing about access.
"use strict";

const csrf = () => document.querySelector('meta[name="csrf-token"]')?.content;
let csrfToken = null;

async function api(method, path, body) {
  const headers = { Accept: "application/json" };
  const token = csrfToken || csrf();
  if (method !== "GET" && token) headers["X-CSRF-Token"] = token;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method, headers, credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const data = response.status === 204 ? null : await response.json().catch(() => null);
  return { ok: response.ok, status: response.status, data };
}

function clearErrors(form) {
  for (const el of form.querySelectorAll("[data-error-for], [data-form-error]")) {
    el.textContent = ""; el.hidden = true;
  }
  for (const input of form.querySelectorAll("[aria-invalid]")) input.removeAttribute("aria-invalid");
}

// The API's error: each detail next to its field when the form has one, the rest on top.
function showError(form, result) {
  const error = result.data?.error;
  const general = form.querySelector("[data-form-error]");
  let shown = false;
  for (const detail of error?.details || []) {
    const field = detail.loc?.[detail.loc.length - 1];
    const slot = field && form.querySelector(`[data-error-for="${CSS.escape(String(field))}"]`);
    if (slot) {
      slot.textContent = detail.msg; slot.hidden = false; shown = true;
      form.querySelector(`[name="${CSS.escape(String(field))}"]`)?.setAttribute("aria-invalid", "true");
    }
  }
  if (!shown || !error?.details?.length) {
    general.textContent = error?.message || `The request failed (${result.status}).`;
    general.hidden = false;
  }
}

function values(form) {
  return Object.fromEntries(new FormData(form).entries());
}

function submitting(form, handler) {
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const button = form.querySelector("button[type=submit]");
    clearErrors(form);
    button.disabled = true;
    try { await handler(values(form)); } finally { button.disabled = false; }
  });
}

function signIn() {
  const first = document.getElementById("sign-in");
  const second = document.getElementById("second-factor");
  if (!first || !second) return;
  const go = () => { window.location.assign(first.dataset.next || "/"); };
  submitting(first, async (body) => {
    const result = await api("POST", "/api/v1/auth/login", body);
    if (!result.ok) return showError(first, result);
    csrfToken = result.data.csrf_token;
    if (result.data.mfa_required) {
      first.hidden = true; second.hidden = false; second.querySelector("input").focus();
      return;
    }
    go();
  });
  submitting(second, async (body) => {
    const result = await api("POST", "/api/v1/auth/2fa", body);
    if (!result.ok) return showError(second, result);
    go();
  });
}

function signOut() {
  for (const button of document.querySelectorAll("[data-sign-out]")) {
    button.addEventListener("click", async () => {
      await api("POST", "/api/v1/auth/logout");
      window.location.assign("/login");
    });
  }
}

// A search box that hides the rows of a table that do not contain its text.
function filters() {
  for (const input of document.querySelectorAll("input[data-filter]")) {
    const table = document.querySelector(input.dataset.filter);
    const empty = document.querySelector("[data-filter-empty]");
    input.addEventListener("input", () => {
      const needle = input.value.trim().toLowerCase();
      let visible = 0;
      for (const row of table.tBodies[0].rows) {
        const match = row.textContent.toLowerCase().includes(needle);
        row.hidden = !match; visible += match ? 1 : 0;
      }
      if (empty) empty.hidden = visible > 0;
    });
  }
}

// Times in the browser's own time zone: the server prints UTC in <time datetime>.
const timeFormat = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "medium" });

function localTime(time) {
  const when = new Date(time.dateTime);
  if (Number.isNaN(when.getTime())) return;
  time.textContent = timeFormat.format(when);
  time.title = time.dateTime;
}

function localTimes() {
  for (const time of document.querySelectorAll("time[datetime]")) localTime(time);
}

// A <time> element for an ISO-8601 instant from the API, shown in the browser's zone.
function timeElement(iso) {
  const time = document.createElement("time");
  time.dateTime = iso; time.textContent = iso;
  localTime(time);
  return time;
}

// Asks before a destructive action, in a modal <dialog> (no window.confirm: a page that
// opens native dialogs cannot be told apart from an injected one). Resolves true on "yes".
function confirmAction(message, yes) {
  return new Promise((resolve) => {
    const dialog = document.createElement("dialog");
    dialog.className = "confirm";
    dialog.setAttribute("aria-label", "Confirm");
    const text = document.createElement("p");
    text.textContent = message;
    const actions = document.createElement("div");
    actions.className = "actions";
    const ok = document.createElement("button");
    ok.type = "button"; ok.className = "danger"; ok.textContent = yes;
    const cancel = document.createElement("button");
    cancel.type = "button"; cancel.className = "secondary"; cancel.textContent = "Cancel";
    actions.append(ok, cancel);
    dialog.append(text, actions);
    document.body.append(dialog);
    const finish = (answer) => { dialog.close(); dialog.remove(); resolve(answer); };
    ok.addEventListener("click", () => finish(true));
    cancel.addEventListener("click", () => finish(false));
    dialog.addEventListener("cancel", (event) => { event.preventDefault(); finish(false); });
    dialog.showModal();
    cancel.focus();
  });
}

document.addEventListener("DOMContentLoaded", () => {
  signIn(); signOut(); filters(); localTimes();
});
