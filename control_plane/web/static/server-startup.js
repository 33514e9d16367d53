// A server's startup page: saves the editable variables (and the image, when offered);
// the API's problems are shown next to their variable, and nothing is saved then.
"use strict";

function startupPage() {
  const root = document.querySelector("[data-startup]");
  const form = document.getElementById("startup-form");
  if (!root || !form) return;
  const status = root.querySelector("[data-startup-status]");
  submitting(form, async () => {
    status.textContent = "";
    const body = { variables: {} };
    for (const input of form.querySelectorAll("input[data-variable]")) {
      if (input.value !== input.defaultValue) body.variables[input.name] = input.value;
    }
    const image = form.querySelector("select[name=image]");
    if (image && !image.options[image.selectedIndex].defaultSelected) body.image = image.value;
    const result = await api("PATCH", `/api/v1/servers/${root.dataset.serverId}/startup`, body);
    if (!result.ok) return showError(form, result);
    // What is saved is now the starting point of the next change.
    for (const variable of result.data.variables) {
      const input = form.querySelector(`input[name="${CSS.escape(variable.env)}"]`);
      if (input) { input.value = variable.value; input.defaultValue = variable.value; }
    }
    if (image) for (const option of image.options) option.defaultSelected = option.selected;
    root.querySelector("[data-startup-command]").textContent = result.data.command.join(" ");
    status.textContent = "Saved. The server uses the new values from its next start.";
  });
}

document.addEventListener("DOMContentLoaded", startupPage);
