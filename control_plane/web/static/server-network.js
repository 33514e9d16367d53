// A server's network page: saves a port's notes, makes a port the main one, takes a free
// port and gives one back (the page is drawn again after each of the last three: the main
// port comes first). The API decides; its problems are shown next to the button, and
// nothing is changed then.
"use strict";

function networkPage() {
  const root = document.querySelector("[data-network]");
  if (!root) return;
  const status = root.querySelector("[data-network-status]");
  const path = (row) => `/api/v1/servers/${root.dataset.serverId}/allocations/${row.dataset.port}`;
  for (const form of root.querySelectorAll("form[data-notes-form]")) {
    const row = form.closest("tr");
    submitting(form, async ({ notes }) => {
      status.textContent = "";
      const result = await api("PATCH", path(row), { notes: notes === "" ? null : notes });
      if (!result.ok) return showError(form, result);
      form.querySelector("input[name=notes]").value = result.data.notes || "";
      status.textContent = "Notes saved.";
    });
  }
  for (const form of root.querySelectorAll("form[data-main-form]")) {
    const row = form.closest("tr");
    submitting(form, async () => {
      status.textContent = "";
      const result = await api("PATCH", path(row), { primary: true });
      if (!result.ok) return showError(form, result);
      window.location.reload();
    });
  }
  for (const form of root.querySelectorAll("form[data-give-back-form]")) {
    const row = form.closest("tr");
    submitting(form, async () => {
      status.textContent = "";
      const result = await api("DELETE", path(row));
      if (!result.ok) return showError(form, result);
      window.location.reload();
    });
  }
  const take = root.querySelector("form[data-take-form]");
  if (take) {
    submitting(take, async () => {
      status.textContent = "";
      const result = await api("POST", `/api/v1/servers/${root.dataset.serverId}/allocations`);
      if (!result.ok) return showError(take, result);
      window.location.reload();
    });
  }
}

document.addEventListener("DOMContentLoaded", networkPage);
