// A server's sub-users page: list, invite by e-mail, edit permissions, remove; pending
// invitations. The boxes on the page are the ones the caller may grant; the API decides.
"use strict";

function usersPage() {
  const root = document.querySelector("[data-users]");
  if (!root) return;
  const base = `/api/v1/servers/${root.dataset.serverId}`;
  const may = (name) => root.hasAttribute(`data-may-${name}`);
  const table = document.getElementById("user-table");
  const empty = root.querySelector("[data-users-empty]");
  const status = root.querySelector("[data-users-status]");
  const problem = root.querySelector("[data-users-error]");
  const invitations = root.querySelector("[data-invitations]");
  const noInvitations = root.querySelector("[data-invitations-empty]");
  const say = (text) => { status.textContent = text; };
  const fail = (result) => {
    problem.textContent = result.data?.error?.message || `The request failed (${result.status}).`;
    problem.hidden = false;
  };
  const ticked = (form) => [...form.querySelectorAll("input[name=permissions]:checked")].map((b) => b.value);

  function actionButton(label, handler, className) {
    const b = document.createElement("button");
    b.type = "button"; b.textContent = label; b.className = className;
    b.addEventListener("click", handler);
    return b;
  }

  function row(user) {
    const tr = document.createElement("tr");
    tr.dataset.subuserId = user.id;
    const email = document.createElement("td");
    email.textContent = user.email;
    const permissions = document.createElement("td");
    const list = document.createElement("code");
    list.className = "permissions";
    list.textContent = user.permissions.join(", ") || "none";
    permissions.append(list);
    const since = document.createElement("td");
    since.append(timeElement(user.created_at));
    const actions = document.createElement("td");
    actions.className = "row-actions";
    if (may("update")) actions.append(actionButton("Edit…", () => edit(user), "secondary"));
    if (may("delete")) actions.append(actionButton("Remove…", () => remove(user), "danger"));
    tr.append(email, permissions, since, actions);
    return tr;
  }

  function invitationItem(invitation) {
    const li = document.createElement("li");
    li.append(`${invitation.email} (${invitation.permissions.join(", ") || "no permissions"}) — expires `);
    li.append(timeElement(invitation.expires_at));
    if (may("delete")) {
      li.append(" ", actionButton("Withdraw", async () => {
        const result = await api("DELETE", `${base}/invitations/${invitation.id}`);
        if (!result.ok) return fail(result);
        say(`Withdrew the invitation of ${invitation.email}.`);
        await load();
      }, "link"));
    }
    return li;
  }

  async function load() {
    const [users, invited] = await Promise.all([
      api("GET", `${base}/users`), api("GET", `${base}/invitations`),
    ]);
    if (!users.ok) return fail(users);
    table.tBodies[0].replaceChildren(...users.data.data.map(row));
    table.hidden = users.data.data.length === 0;
    empty.hidden = users.data.data.length > 0;
    if (!invited.ok) return fail(invited);
    invitations.replaceChildren(...invited.data.data.map(invitationItem));
    noInvitations.hidden = invited.data.data.length > 0;
  }

  const dialog = document.getElementById("edit-dialog");
  const editForm = document.getElementById("edit-form");
  let editing = null;
  let beyond = [];

  function edit(user) {
    editing = user;
    clearErrors(editForm);
    const shown = new Set();
    for (const box of editForm.querySelectorAll("input[name=permissions]")) {
      box.checked = user.permissions.includes(box.value);
      shown.add(box.value);
    }
    // Permissions the editor cannot grant stay as they are (sent back unchanged).
    beyond = user.permissions.filter((p) => !shown.has(p));
    editForm.querySelector("[data-edit-email]").textContent = user.email;
    editForm.querySelector("[data-edit-beyond]").hidden = beyond.length === 0;
    editForm.querySelector("[data-edit-beyond-list]").textContent = beyond.join(", ");
    dialog.showModal();
  }

  if (editForm) {
    editForm.querySelector("[data-close]").addEventListener("click", () => dialog.close());
    submitting(editForm, async () => {
      const permissions = [...ticked(editForm), ...beyond];
      const result = await api("PATCH", `${base}/users/${editing.id}`, { permissions });
      if (!result.ok) return showError(editForm, result);
      dialog.close();
      say(`Saved the permissions of ${result.data.email}.`);
      await load();
    });
  }

  async function remove(user) {
    problem.hidden = true;
    const sure = await confirmAction(
      `Remove ${user.email}? They lose access to this server at once.`, "Remove");
    if (!sure) return;
    const result = await api("DELETE", `${base}/users/${user.id}`);
    if (!result.ok) return fail(result);
    say(`Removed ${user.email}.`);
    await load();
  }

  const invite = document.getElementById("invite-form");
  if (invite) {
    submitting(invite, async (body) => {
      const order = { email: body.email, permissions: ticked(invite) };
      let result = await api("POST", `${base}/users`, order);
      // No account with that address: mail an invitation instead.
      if (result.status === 404) result = await api("POST", `${base}/invitations`, order);
      if (!result.ok) return showError(invite, result);
      const added = result.status === 201 && result.data.user_id;
      say(added ? `Added ${result.data.email}.` : `Invited ${result.data.email}: they were mailed a link.`);
      invite.reset();
      await load();
    });
  }
  load();
}

document.addEventListener("DOMContentLoaded", usersPage);
