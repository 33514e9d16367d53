// The invitation page (templates/auth/invitation.html): accept as the signed-in user, or
// create the invited account. Uses app.js's api()/submitting()/showError(); the JSON API decides.
"use strict";

function joinInvitation() {
  const form = document.getElementById("join-invitation");
  if (!form) return;
  submitting(form, async () => {
    const result = await api("POST", "/api/v1/invitations/join", { token: form.dataset.token });
    if (!result.ok) return showError(form, result);
    window.location.assign("/");
  });
}

function createInvitedAccount() {
  const form = document.getElementById("accept-invitation");
  if (!form) return;
  submitting(form, async (body) => {
    if (body.password !== body.password_again) {
      const slot = form.querySelector('[data-error-for="password_again"]');
      slot.textContent = "The two passwords differ."; slot.hidden = false;
      form.querySelector('[name="password_again"]').setAttribute("aria-invalid", "true");
      return;
    }
    const result = await api("POST", "/api/v1/invitations/accept",
      { token: form.dataset.token, password: body.password });
    if (!result.ok) return showError(form, result);
    window.location.assign("/");
  });
}

document.addEventListener("DOMContentLoaded", () => { joinInvitation(); createInvitedAccount(); });
