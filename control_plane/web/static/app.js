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

// Every <time datetime> in the reader's time zone (pages print UTC); the UTC text stays as
// the element's title.
function localTimes(root = document) {
  const format = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });
  for (const element of root.querySelectorAll("time[datetime]")) {
    const moment = new Date(element.getAttribute("datetime"));
    if (Number.isNaN(moment.getTime())) continue;
    element.title = element.textContent;
    element.textContent = format.format(moment);
  }
}

document.addEventListener("DOMContentLoaded", () => { signIn(); signOut(); filters(); localTimes(); });
