// The sign-in page's passkey button ([data-passkey-signin]): a discoverable credential, so
// no e-mail address is asked for; the API decides whose passkey it is.
"use strict";

function passkeySignIn() {
  const box = document.querySelector("[data-passkey-signin]");
  if (!box) return;
  const button = box.querySelector("button");
  const error = box.querySelector("[data-passkey-error]");
  if (!webauthn.supported()) {
    box.hidden = true;
    return;
  }
  box.hidden = false;
  // Once the password was right and a second factor is asked for, the button would only
  // start another sign-in: it goes with the password form.
  const second = document.getElementById("second-factor");
  if (second) {
    new MutationObserver(() => { box.hidden = !second.hidden; })
      .observe(second, { attributes: true, attributeFilter: ["hidden"] });
  }
  const fail = (message) => { error.textContent = message; error.hidden = false; };
  button.addEventListener("click", async () => {
    error.hidden = true;
    button.disabled = true;
    try {
      const options = await api("POST", "/api/v1/auth/passkey/options");
      if (!options.ok) return fail(options.data?.error?.message || `The request failed (${options.status}).`);
      let credential;
      try {
        credential = await navigator.credentials.get({ publicKey: webauthn.requestOptions(options.data.options) });
      } catch (err) {
        return fail(webauthn.problem(err));
      }
      const result = await api("POST", "/api/v1/auth/passkey", { credential: webauthn.assertionJSON(credential) });
      if (!result.ok) return fail(result.data?.error?.message || `The request failed (${result.status}).`);
      window.location.assign(box.dataset.next || "/");
    } finally {
      button.disabled = false;
    }
  });
}

document.addEventListener("DOMContentLoaded", passkeySignIn);
