// StellarStack panel: signing in (password, second factor, OAuth providers), registration,
// password reset and e-mail verification. Uses app.js's api()/submitting()/showError(); the
// API decides everything, this only shows its answers.
"use strict";

// A message for the API's refusal that the page shows as it is (401, 403, 409, 429...).
function says(form, message) {
  showError(form, { status: 0, data: { error: { message } } });
}

const CODE_ASKS = {
  totp: { label: "Authentication code", help: "Enter the 6-digit code from your authenticator app." },
  recovery: {
    label: "Recovery code",
    help: "Enter one of the recovery codes you saved when you turned on two-factor authentication. Each one works once.",
  },
};

function signInPage() {
  const first = document.getElementById("sign-in");
  const second = document.getElementById("second-factor");
  if (!first || !second) return;
  const firstStep = document.querySelector("[data-first-step]");
  // Back to the sign-in page with "next": it sends a signed-in visitor there (the server
  // checks that it is a path on this site) and shows the second step to a pending one.
  const go = () => { window.location.assign(first.dataset.next || "/"); };
  const toSecondStep = () => {
    firstStep.hidden = true; second.hidden = false; second.querySelector("input").focus();
  };
  submitting(first, async (body) => {
    const result = await api("POST", "/api/v1/auth/login", body);
    if (!result.ok) return showError(first, result);
    csrfToken = result.data.csrf_token;
    if (result.data.mfa_required) return toSecondStep();
    go();
  });

  // The second step takes a TOTP code or a recovery code (the API tells them apart); the
  // switch only changes what the field asks for.
  const code = second.querySelector("#code");
  const useMode = (mode) => {
    second.querySelector("[data-code-label]").textContent = CODE_ASKS[mode].label;
    second.querySelector("[data-code-help]").textContent = CODE_ASKS[mode].help;
    for (const el of second.querySelectorAll("[data-code-switch]")) el.hidden = el.dataset.codeSwitch === mode;
    code.inputMode = mode === "totp" ? "numeric" : "text";
    code.autocomplete = mode === "totp" ? "one-time-code" : "off";
    code.value = ""; clearErrors(second); code.focus();
  };
  for (const button of second.querySelectorAll("[data-code-switch]")) {
    button.addEventListener("click", () => useMode(button.dataset.codeSwitch));
  }
  submitting(second, async (body) => {
    const result = await api("POST", "/api/v1/auth/2fa", { code: body.code.trim() });
    if (result.ok) return go();
    if (result.status === 401) {
      // A wrong code, or the password step's five minutes are over: the session says which.
      const session = await api("GET", "/api/v1/auth/session");
      if (!session.ok) {
        second.hidden = true; firstStep.hidden = false;
        says(first, "Signing in took too long: enter your password again.");
        first.querySelector("input[name=password]").value = "";
        first.querySelector("input[name=email]").focus();
        return;
      }
    }
    showError(second, result);
  });
  providerButtons();
}

const NEXT_KEY = "stellar.signin.next";

// The configured providers' buttons: the API gives the provider's address to go to; where
// to land afterwards waits in this tab's session storage (the server checks it again).
function providerButtons() {
  const box = document.querySelector(".providers[data-next]");
  if (!box) return;
  for (const button of box.querySelectorAll("button[data-oauth]")) {
    button.addEventListener("click", async () => {
      clearErrors(box);
      button.disabled = true;
      try {
        const result = await api("POST", "/api/v1/auth/oauth/start", { provider: button.dataset.oauth });
        if (!result.ok) return showError(box, result);
        sessionStorage.setItem(NEXT_KEY, box.dataset.next || "/");
        window.location.assign(result.data.authorize_url);
      } finally { button.disabled = false; }
    });
  }
}

// The page the provider sends the browser back to: hand its code and state to the API.
async function oauthReturn() {
  const box = document.querySelector("[data-oauth-return]");
  if (!box) return;
  const query = window.location.search;
  // A reload must not send the code again (it works once anyway).
  history.replaceState(null, "", window.location.pathname);
  const status = box.querySelector("[data-oauth-status]");
  const result = await api("GET", "/api/v1/auth/oauth/callback" + query);
  const next = sessionStorage.getItem(NEXT_KEY) || "/";
  sessionStorage.removeItem(NEXT_KEY);
  if (!result.ok) {
    status.hidden = true;
    showError(box, result);
    box.querySelector("[data-oauth-back]").hidden = false;
    return;
  }
  if (result.data.linked) {
    status.textContent = `Your ${result.data.linked.provider} account is linked: you can sign in with it.`;
    box.querySelector("[data-oauth-linked]").hidden = false;
    return;
  }
  status.textContent = result.data.mfa_required ? "One more step…" : "Signed in.";
  window.location.assign("/login?next=" + encodeURIComponent(next));
}

// Two password fields must agree before anything is sent.
function samePasswords(form, body, field) {
  if (body[field] === body.password_again) return true;
  const slot = form.querySelector('[data-error-for="password_again"]');
  slot.textContent = "The two passwords differ."; slot.hidden = false;
  form.querySelector('[name="password_again"]').setAttribute("aria-invalid", "true");
  return false;
}

function registerPage() {
  const form = document.getElementById("register");
  if (!form) return;
  submitting(form, async (body) => {
    if (!samePasswords(form, body, "password")) return;
    const result = await api("POST", "/api/v1/auth/register", { email: body.email, password: body.password });
    if (!result.ok) return showError(form, result);
    csrfToken = result.data.csrf_token;
    if (!result.data.must_verify) return window.location.assign(form.dataset.next || "/");
    // Nothing else is open to an unverified account here: say where the link went.
    form.hidden = true;
    const done = document.querySelector("[data-registered]");
    done.querySelector("[data-registered-message]").textContent =
      `Your account is made. Open the link we mailed to ${result.data.user.email} to start using it.`;
    done.hidden = false;
  });
}

function forgotPage() {
  const form = document.getElementById("forgot");
  if (!form) return;
  submitting(form, async (body) => {
    const result = await api("POST", "/api/v1/auth/password-reset", { email: body.email });
    if (!result.ok) return showError(form, result);
    form.hidden = true;
    const sent = document.querySelector("[data-sent]");
    // The same answer whether or not the address has an account.
    sent.textContent = result.data.message.charAt(0).toUpperCase() + result.data.message.slice(1) + ".";
    sent.hidden = false;
  });
}

function showDone(form, message) {
  form.hidden = true;
  const done = document.querySelector("[data-done]");
  done.querySelector("[data-done-message]").textContent = message;
  done.hidden = false;
  done.querySelector("a")?.focus();
}

function resetPage() {
  const form = document.getElementById("reset");
  if (!form) return;
  submitting(form, async (body) => {
    if (!samePasswords(form, body, "new_password")) return;
    const result = await api("POST", "/api/v1/auth/password-reset/confirm",
      { token: form.dataset.token, new_password: body.new_password });
    if (!result.ok) return showError(form, result);
    showDone(form, "Your password is changed, and every session of your account is signed out. Sign in with the new password.");
  });
}

function verifyPage() {
  const form = document.getElementById("verify");
  if (!form) return;
  submitting(form, async () => {
    const result = await api("GET", "/api/v1/auth/email/verify?token=" + encodeURIComponent(form.dataset.token));
    if (!result.ok) return showError(form, result);
    showDone(form, `Thank you: ${result.data.email} is verified.`);
  });
}

document.addEventListener("DOMContentLoaded", () => {
  signInPage(); registerPage(); forgotPage(); resetPage(); verifyPage(); oauthReturn();
});
