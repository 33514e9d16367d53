// Admin pages for blueprints, servers and the audit trail: what they share, and the audit
// page's chain state (admin-blueprints.js and admin-servers.js load after this file).
// Everything here acts through the JSON API (app.js's api(), the session's CSRF token) and
// decides nothing about access: the pages are administrators' only, and the API refuses on
// its own whatever is sent. User strings are only ever inserted as text.
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

// ---- audit: the chain's state --------------------------------------------------------

// Asked for with a button, not on every load: the check reads the whole trail (~26 us an
// entry: half a minute for a million).
async function chainStatus(button) {
  const status = document.querySelector("[data-chain-status]");
  const list = document.querySelector("[data-chain-problems]");
  button.disabled = true;
  list.hidden = true;
  status.dataset.chain = "checking";
  status.textContent = "Checking the hash chain…";
  let result;
  try {
    result = await api("GET", "/api/v1/audit/verify");
  } catch {
    result = { ok: false, status: "the request did not complete", data: null };
  } finally {
    button.disabled = false;
  }
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
  list.replaceChildren(...problems.map((problem) => el("li", problem)));
  list.hidden = intact;
}

document.addEventListener("DOMContentLoaded", () => {
  const button = document.querySelector("[data-chain-check]");
  if (button) button.addEventListener("click", () => chainStatus(button));
});
