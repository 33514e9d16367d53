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

// Times: the server prints <time datetime="ISO-8601 UTC">(UTC text)</time>; each is shown in
// the browser's locale and time zone (data-format="date" for a date alone), its title the
// full time with the zone. Run on load and on whatever is added later (htmx fragments, rows
// drawn by a page's script): a MutationObserver sees them all.
const timeFormats = {
  datetime: new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" }),
  date: new Intl.DateTimeFormat(undefined, { dateStyle: "medium" }),
  full: new Intl.DateTimeFormat(undefined, { dateStyle: "full", timeStyle: "long" }),
};

function localTimes(root = document) {
  const found = root.matches?.("time[datetime]") ? [root] : [];
  for (const el of [...found, ...(root.querySelectorAll?.("time[datetime]") || [])]) {
    const when = new Date(el.getAttribute("datetime"));
    if (Number.isNaN(when.getTime())) continue;
    const format = timeFormats[el.dataset.format] || timeFormats.datetime;
    const text = format.format(when);
    // Only when it changes: the observer below sees this write too.
    if (el.textContent !== text) el.textContent = text;
    el.title = timeFormats.full.format(when);
    el.dataset.local = "true";
  }
}

function watchTimes() {
  new MutationObserver((changes) => {
    for (const change of changes) {
      for (const node of change.addedNodes) {
        if (node.nodeType === Node.ELEMENT_NODE) localTimes(node);
      }
    }
  }).observe(document.body, { childList: true, subtree: true });
}

// The page is usable: a "stellar-ready" performance mark (bench/web.py reads it) and
// <html data-ready="true"> (the page walk waits for it). A page whose scripts are ready only
// later (the console, once connected) holds a [data-defer-ready] element and calls this itself.
function markReady() {
  if (document.documentElement.dataset.ready === "true") return;
  performance.mark("stellar-ready");
  document.documentElement.dataset.ready = "true";
}

// A <time> element for an ISO-8601 instant from the API, shown in the browser's zone.
function timeElement(iso) {
  const time = document.createElement("time");
  time.dateTime = iso; time.textContent = iso;
  localTimes(time);
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
  signOut(); filters(); localTimes(); watchTimes();
  if (!document.querySelector("[data-defer-ready]")) markReady();
});

