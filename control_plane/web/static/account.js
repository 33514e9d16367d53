// The account pages (/account…): every change goes through the JSON API, which decides
// whether it is allowed; this file only sends forms and shows answers. Secrets the API
// returns once (recovery codes, a new API key) are shown in the page, never stored.
"use strict";

// The API's field errors name a list's item by its index (["body", "allowed_ips", 0]):
// shown next to the list's field.
function showAccountError(form, result) {
  const details = result.data?.error?.details;
  if (Array.isArray(details)) {
    for (const detail of details) {
      const loc = [...(detail.loc || [])];
      while (loc.length && typeof loc[loc.length - 1] === "number") loc.pop();
      detail.loc = loc;
    }
  }
  showError(form, result);
}

function done(form, message) {
  const slot = form.querySelector("[data-form-done]");
  if (slot) { slot.textContent = message; slot.hidden = false; }
}

// A destructive button acts on its second press: the first asks (no dialog, which a page
// must never open).
function confirmed(button, question) {
  if (button.dataset.armed) return true;
  button.dataset.armed = "1";
  button.dataset.label = button.textContent;
  button.textContent = question;
  const disarm = () => {
    delete button.dataset.armed;
    button.textContent = button.dataset.label;
  };
  button.addEventListener("blur", disarm, { once: true });
  return false;
}

function listError(result) {
  const slot = document.querySelector("[data-list-error]");
  if (!slot) return;
  slot.textContent = result.data?.error?.message || `The request failed (${result.status}).`;
  slot.hidden = false;
}

// A row's button: ``act(id)`` on its second press, then the page again.
function rowActions(selector, idAttribute, question, act) {
  for (const button of document.querySelectorAll(selector)) {
    button.addEventListener("click", async () => {
      if (!confirmed(button, question)) return;
      button.disabled = true;
      const result = await act(button.closest("tr").getAttribute(idAttribute));
      if (!result.ok) { button.disabled = false; return listError(result); }
      window.location.reload();
    });
  }
}

// Copies ``text()``; where the browser refuses the clipboard, the secret stays selectable.
function copyButton(button, text, status) {
  button?.addEventListener("click", async () => {
    try {
      await navigator.clipboard.writeText(text());
      if (status) { status.textContent = "Copied."; status.hidden = false; }
    } catch {
      if (status) { status.textContent = "Copying was refused: select the text and copy it."; status.hidden = false; }
    }
  });
}

function form(id, handler) {
  const found = document.getElementById(id);
  if (found) submitting(found, (body) => handler(found, body));
}

function profile() {
  form("resend-verification", async (el) => {
    const result = await api("POST", "/api/v1/account/email/verification");
    if (!result.ok) return showAccountError(el, result);
    done(el, result.data.message);
  });
  form("change-email", async (el, body) => {
    const result = await api("POST", "/api/v1/account/email", body);
    if (!result.ok) return showAccountError(el, result);
    el.reset();
    done(el, result.data.message);
  });
  form("time-zone", async (el, body) => {
    const result = await api("PATCH", "/api/v1/account/settings", body);
    if (!result.ok) return showAccountError(el, result);
    done(el, `Saved: ${result.data.timezone}.`);
  });
  form("change-password", async (el, body) => {
    if (body.new_password !== body.repeat_password) {
      return showAccountError(el, {
        status: 400,
        data: { error: { message: "the two new passwords differ", details: [{ loc: ["repeat_password"], msg: "type the same new password twice" }] } },
      });
    }
    const result = await api("POST", "/api/v1/auth/password", {
      current_password: body.current_password, new_password: body.new_password,
    });
    if (!result.ok) return showAccountError(el, result);
    // A new session replaced this one (and ended every other): its CSRF token is new.
    if (result.data?.csrf_token) csrfToken = result.data.csrf_token;
    el.reset();
    // Ending the sessions retired a change of address still waiting for its link.
    const pending = document.querySelector("[data-pending-email]");
    pending?.remove();
    const cancelled = pending ? " The change of e-mail address that was waiting for its link is cancelled." : "";
    done(el, `Password changed. Your other sessions are signed out.${cancelled}`);
  });
}

function showRecoveryCodes(codes) {
  const box = document.querySelector("[data-recovery-codes]");
  const list = box.querySelector("[data-codes-list]");
  list.replaceChildren(...codes.map((code) => {
    const item = document.createElement("li");
    const text = document.createElement("code");
    text.textContent = code;
    item.append(text);
    return item;
  }));
  for (const other of document.querySelectorAll("[data-two-factor] > :not([data-recovery-codes]):not(h2)")) {
    other.hidden = true;
  }
  box.hidden = false;
  box.querySelector("[data-codes-heading]").focus();
  copyButton(box.querySelector("[data-copy-codes]"), () => codes.join("\n"), box.querySelector("[data-copied]"));
}

function twoFactor() {
  form("start-two-factor", async (el) => {
    const result = await api("POST", "/api/v1/account/2fa/setup");
    if (!result.ok) return showAccountError(el, result);
    const enrolment = document.querySelector("[data-enrolment]");
    const qr = enrolment.querySelector("[data-qr]");
    // The API renders the QR code itself (an SVG, as a data: URI the page's CSP allows
    // as an image); anything else is not shown.
    if (result.data.qr_code.startsWith("data:image/svg+xml")) qr.src = result.data.qr_code;
    enrolment.querySelector("[data-secret]").textContent = result.data.secret;
    el.hidden = true;
    enrolment.hidden = false;
    document.getElementById("enable-code").focus();
  });
  form("enable-two-factor", async (el, body) => {
    const result = await api("POST", "/api/v1/account/2fa/enable", body);
    if (!result.ok) return showAccountError(el, result);
    showRecoveryCodes(result.data.recovery_codes);
  });
  form("regenerate-codes", async (el, body) => {
    const result = await api("POST", "/api/v1/account/2fa/recovery-codes", body);
    if (!result.ok) return showAccountError(el, result);
    showRecoveryCodes(result.data.recovery_codes);
  });
  form("disable-two-factor", async (el, body) => {
    const result = await api("POST", "/api/v1/account/2fa/disable", body);
    if (!result.ok) return showAccountError(el, result);
    window.location.reload();
  });
}

function passkeys() {
  const progress = document.querySelector("#add-passkey [data-form-progress]");
  form("add-passkey", async (el, body) => {
    if (!webauthn.supported()) {
      return showAccountError(el, { status: 0, data: { error: { message: "This browser does not support passkeys." } } });
    }
    const options = await api("POST", "/api/v1/account/passkeys/options");
    if (!options.ok) return showAccountError(el, options);
    let credential;
    progress.hidden = false;
    try {
      credential = await navigator.credentials.create({ publicKey: webauthn.creationOptions(options.data.options) });
    } catch (err) {
      return showAccountError(el, { status: 0, data: { error: { message: webauthn.problem(err) } } });
    } finally {
      progress.hidden = true;
    }
    const result = await api("POST", "/api/v1/account/passkeys", {
      name: body.name, credential: webauthn.registrationJSON(credential),
    });
    if (!result.ok) return showAccountError(el, result);
    window.location.reload();
  });
  for (const start of document.querySelectorAll("[data-rename-start]")) {
    start.addEventListener("click", () => {
      const row = start.closest("tr");
      row.querySelector("[data-passkey-name]").hidden = true;
      const rename = row.querySelector("[data-rename-passkey]");
      rename.hidden = false;
      rename.querySelector("input").focus();
    });
  }
  for (const rename of document.querySelectorAll("[data-rename-passkey]")) {
    submitting(rename, async (body) => {
      const id = rename.closest("tr").dataset.passkeyId;
      const result = await api("PATCH", `/api/v1/account/passkeys/${encodeURIComponent(id)}`, body);
      if (!result.ok) return showAccountError(rename, result);
      window.location.reload();
    });
  }
  rowActions("[data-remove-passkey]", "data-passkey-id", "Really remove?",
    (id) => api("DELETE", `/api/v1/account/passkeys/${encodeURIComponent(id)}`));
}

function sessions() {
  rowActions("[data-revoke-session]", "data-session-id", "Really sign out?",
    (id) => api("DELETE", `/api/v1/auth/sessions/${encodeURIComponent(id)}`));
  const all = document.querySelector("[data-revoke-others]");
  all?.addEventListener("click", async () => {
    if (!confirmed(all, "Really sign out all others?")) return;
    all.disabled = true;
    for (const row of document.querySelectorAll("tr[data-session-id]:not([data-current])")) {
      const result = await api("DELETE", `/api/v1/auth/sessions/${encodeURIComponent(row.dataset.sessionId)}`);
      // Already gone (expired, or ended elsewhere meanwhile) is what was wanted.
      if (!result.ok && result.status !== 404) { all.disabled = false; return listError(result); }
    }
    window.location.reload();
  });
}

function apiKeys() {
  form("create-key", async (el) => {
    const body = {
      name: el.elements.name.value,
      scopes: [...el.querySelectorAll("input[name=scopes]:checked")].map((box) => box.value),
      allowed_ips: el.elements.allowed_ips.value.split(/[\s,]+/).filter(Boolean),
    };
    if (el.elements.kind) body.kind = el.elements.kind.value;
    // The browser's local time, as an instant the API reads (with its zone).
    const expiry = el.elements.expires_at.value;
    if (expiry) body.expires_at = new Date(expiry).toISOString();
    const result = await api("POST", "/api/v1/account/api-keys", body);
    if (!result.ok) return showAccountError(el, result);
    const box = document.querySelector("[data-new-key]");
    box.querySelector("[data-new-key-secret]").textContent = result.data.key;
    box.hidden = false;
    box.querySelector("[data-new-key-heading]").focus();
    copyButton(box.querySelector("[data-copy-key]"), () => result.data.key, box.querySelector("[data-copied]"));
    el.reset();
  });
  rowActions("[data-revoke-key]", "data-key-id", "Really revoke?",
    (id) => api("DELETE", `/api/v1/account/api-keys/${encodeURIComponent(id)}`));
}

function sshKeys() {
  form("add-ssh-key", async (el, body) => {
    const result = await api("POST", "/api/v1/account/ssh-keys", body);
    if (!result.ok) return showAccountError(el, result);
    window.location.reload();
  });
  rowActions("[data-remove-ssh-key]", "data-ssh-key-id", "Really remove?",
    (id) => api("DELETE", `/api/v1/account/ssh-keys/${encodeURIComponent(id)}`));
}

document.addEventListener("DOMContentLoaded", () => {
  profile(); twoFactor(); passkeys(); sessions(); apiKeys(); sshKeys();
});
