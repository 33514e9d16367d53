// A server's files page: lists the folder in the URL (?path=), edits a file (?edit=), and
// does every operation through the files API, which checks each one itself. Which controls
// exist is the server's decision (the data-may-* attributes and the dialogs it rendered);
// names and paths are only ever inserted as text.
"use strict";

(() => {
  const root = document.querySelector("[data-files]");
  if (!root) return;
  const $ = (selector, within = root) => within.querySelector(selector);
  const base = `/api/v1/servers/${root.dataset.serverId}/files`;
  const may = (what) => root.hasAttribute(`data-may-${what}`);
  const ARCHIVE = /\.(tar|tar\.gz|tgz|tar\.bz2|tbz2|tar\.xz|txz|zip)$/i;
  const maxEdit = Number(root.dataset.maxEdit);
  let directory = root.dataset.directory;
  const selected = new Set();

  const join = (dir, name) => (dir === "/" ? `/${name}` : `${dir}/${name}`);
  const parent = (path) => path.slice(0, path.lastIndexOf("/")) || "/";
  const nameOf = (path) => path.slice(path.lastIndexOf("/") + 1);
  const token = () => document.querySelector('meta[name="csrf-token"]')?.content || "";
  // The page's own URL for a folder or a file: slashes kept readable.
  const href = (key, path) => `?${key}=${encodeURIComponent(path).replaceAll("%2F", "/")}`;
  const query = (path) => `path=${encodeURIComponent(path)}`;
  const errorText = (result) => result.data?.error?.message || `The request failed (${result.status}).`;

  function say(selector, text) {
    const slot = $(selector);
    slot.textContent = text || "";
    slot.hidden = !text;
  }
  const fail = (text) => say("[data-files-error]", text);
  const status = (text) => say("[data-files-status]", text);

  function size(bytes) {
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let value = bytes, unit = 0;
    while (value >= 1024 && unit < units.length - 1) { value /= 1024; unit += 1; }
    return `${unit ? value.toFixed(1) : value} ${units[unit]}`;
  }

  function element(tag, text, attributes = {}) {
    const made = document.createElement(tag);
    if (text !== undefined) made.textContent = text;
    for (const [key, value] of Object.entries(attributes)) made.setAttribute(key, value);
    return made;
  }

  async function send(method, path, body, type = "application/json") {
    const headers = { Accept: "application/json", "X-CSRF-Token": token() };
    if (body !== undefined) headers["Content-Type"] = type;
    const response = await fetch(path, {
      method, headers, credentials: "same-origin",
      body: body === undefined || type !== "application/json" ? body : JSON.stringify(body),
    });
    const data = response.status === 204 ? null : await response.json().catch(() => null);
    return { ok: response.ok, status: response.status, data };
  }

  // Breadcrumbs: each parent a link, the current folder or file last.
  function drawCrumbs(path) {
    const list = $("[data-crumbs] ol");
    list.replaceChildren();
    const parts = path.split("/").filter(Boolean);
    const trail = [["Files", "/"], ...parts.map((part, i) => [part, `/${parts.slice(0, i + 1).join("/")}`])];
    trail.forEach(([name, target], index) => {
      const item = element("li");
      if (index === trail.length - 1) item.append(element("span", name, { "aria-current": "location" }));
      else item.append(element("a", name, { href: href("path", target), "data-path": target }));
      list.append(item);
    });
  }

  async function showDisk() {
    const result = await send("GET", `${base}/disk`);
    if (!result.ok) return;
    const { used_bytes: used, limit_bytes: limit } = result.data;
    const meter = $("[data-disk-meter]");
    meter.hidden = !limit;
    if (limit) { meter.max = limit; meter.value = Math.min(used, limit); meter.high = limit * 0.9; }
    $("[data-disk-text]").textContent = limit
      ? `Disk: ${size(used)} used of ${size(limit)} (${Math.round((used / limit) * 100)}%)`
      : `Disk: ${size(used)} used (no limit)`;
    $("[data-disk]").hidden = false;
  }

  // --- The folder's entries ---------------------------------------------------------

  function actionButton(label, handler, extra = {}) {
    const button = element("button", label, { type: "button", class: "link", ...extra });
    button.addEventListener("click", handler);
    return button;
  }

  function row(entry) {
    const tr = element("tr");
    tr.dataset.name = entry.name;
    const pick = element("td");
    if (may("archive") || may("delete")) {
      const box = element("input", undefined, { type: "checkbox", "aria-label": `Select ${entry.name}` });
      box.addEventListener("change", () => {
        if (box.checked) selected.add(entry.name); else selected.delete(entry.name);
        updateSelection();
      });
      pick.append(box);
    }
    const name = element("td", undefined, { class: `name type-${entry.type}` });
    const path = join(directory, entry.name);
    if (entry.type === "directory") {
      // A trailing slash marks a folder; outside the link, so the link's name is the folder's.
      name.append(element("a", entry.name, { href: href("path", path), "data-path": path }),
        element("span", "/", { class: "muted", "aria-hidden": "true" }));
    } else if (entry.type === "file" && entry.size <= maxEdit) {
      name.append(element("a", entry.name, { href: href("edit", path), "data-edit": path }));
    } else {
      name.append(element("span", entry.name));
    }
    if (entry.link_target !== null) name.append(element("span", ` → ${entry.link_target}`, { class: "muted" }));
    const when = new Date(entry.mtime * 1000);
    const modified = element("td");
    modified.append(element("time", when.toLocaleString(), { datetime: when.toISOString() }));
    const actions = element("td", undefined, { class: "actions" });
    if (entry.type === "file") {
      const download = element("a", "Download", { href: `${base}/contents?${query(path)}`, download: entry.name });
      download.setAttribute("aria-label", `Download ${entry.name}`);
      actions.append(download);
    }
    if (may("archive") && entry.type === "file" && ARCHIVE.test(entry.name)) {
      actions.append(actionButton("Extract", () => extract(path), { "aria-label": `Extract ${entry.name}` }));
    }
    if (may("write")) {
      actions.append(actionButton("Rename", () => openRename(path), { "aria-label": `Rename ${entry.name}` }));
    }
    if (may("delete")) {
      actions.append(actionButton("Delete", () => openDelete([entry.name]), { "aria-label": `Delete ${entry.name}`, class: "link danger" }));
    }
    tr.append(pick, name, element("td", entry.type === "directory" ? "–" : size(entry.size)), modified, actions);
    return tr;
  }

  function updateSelection() {
    for (const button of root.querySelectorAll("[data-compress], [data-delete-selected]")) {
      button.disabled = selected.size === 0;
    }
  }

  async function list() {
    selected.clear(); updateSelection();
    $("[data-loading]").hidden = false;
    const result = await send("GET", `${base}/list?${query(directory)}`);
    $("[data-loading]").hidden = true;
    const body = $("[data-entries]");
    body.replaceChildren();
    if (!result.ok) {
      $("[data-listing]").hidden = true; $("[data-files-empty]").hidden = true;
      return fail(errorText(result));
    }
    // Folders first, then files, each by name.
    const entries = [...result.data.entries].sort((a, b) =>
      (a.type === "directory" ? 0 : 1) - (b.type === "directory" ? 0 : 1) || a.name.localeCompare(b.name));
    body.append(...entries.map(row));
    $("[data-listing]").hidden = entries.length === 0;
    $("[data-files-empty]").hidden = entries.length > 0;
    $("[data-truncated]").hidden = !result.data.truncated;
  }

  // --- Moving around: the URL holds the folder or file, so back and forward work ------

  async function show({ push = false } = {}) {
    const params = new URLSearchParams(location.search);
    const edit = params.get("edit");
    fail(""); status("");
    if (edit) {
      directory = parent(edit);
      drawCrumbs(edit);
      return editor.open(edit);
    }
    directory = params.get("path") || "/";
    editor.close();
    drawCrumbs(directory);
    return list();
  }

  async function go(url) {
    if (!(await editor.mayLeave())) return;
    history.pushState(null, "", url);
    await show();
  }

  root.addEventListener("click", (event) => {
    const link = event.target.closest("a[data-path], a[data-edit], a[data-close-editor]");
    if (!link || event.ctrlKey || event.metaKey || event.shiftKey || event.button !== 0) return;
    event.preventDefault();
    go(link.dataset.edit ? href("edit", link.dataset.edit) : href("path", link.dataset.path || directory));
  });

  window.addEventListener("popstate", async () => {
    // Back or forward with unsaved changes: stay on the file until the user decides.
    if (editor.isDirty()) {
      const target = location.href;
      history.pushState(null, "", href("edit", editor.path()));
      if (!(await editor.mayLeave())) return;
      history.replaceState(null, "", target);
    }
    show();
  });

  // --- Dialogs: real <dialog> elements (focus kept inside, Escape closes) --------------

  function dialog(id, handler) {
    const box = document.getElementById(id);
    if (!box) return null;
    const form = box.querySelector("form");
    for (const button of box.querySelectorAll("[data-close]")) button.addEventListener("click", () => box.close());
    box.addEventListener("close", () => { clearErrors(form); form.reset(); });
    submitting(form, async (values) => {
      const result = await handler(values);
      if (result && !result.ok) return showError(form, result);
      box.close();
    });
    return box;
  }

  function ask(id) {
    const box = document.getElementById(id);
    box.showModal();
    box.querySelector("input:not([type=hidden]), select, button[type=submit]")?.focus();
    return box;
  }

  for (const opener of root.querySelectorAll("[data-dialog]")) {
    opener.addEventListener("click", () => ask(opener.dataset.dialog));
  }

  async function after(result, message) {
    if (result.ok) { status(message(result.data)); await list(); showDisk(); }
    return result;
  }

  dialog("mkdir-dialog", (values) =>
    send("POST", `${base}/directory`, { path: join(directory, values.name.trim()) })
      .then((r) => after(r, () => `Folder ${values.name.trim()} created.`)));

  dialog("pull-dialog", async (values) => {
    status("Downloading the file to the server…");
    const body = { url: values.url.trim(), directory };
    if (values.name.trim()) body.name = values.name.trim();
    const result = await send("POST", `${base}/pull`, body);
    if (!result.ok) status("");
    return after(result, (entry) => `Pulled ${entry.name} (${size(entry.size)}).`);
  });

  let renaming = null;
  dialog("rename-dialog", (values) =>
    send("POST", `${base}/rename`, { source: renaming, destination: values.destination.trim() })
      .then((r) => after(r, (entry) => `Renamed to ${entry.path}.`)));
  function openRename(path) {
    renaming = path;
    const box = ask("rename-dialog");
    $("[data-rename-source]", box).textContent = path;
    const input = $("input[name=destination]", box);
    input.value = path;
    input.setSelectionRange(path.length - nameOf(path).length, path.length);
  }

  let deleting = [];
  dialog("delete-dialog", () =>
    send("POST", `${base}/delete`, { paths: deleting.map((name) => join(directory, name)) })
      .then((r) => after(r, () => `Deleted ${deleting.length === 1 ? deleting[0] : `${deleting.length} entries`}.`)));
  function openDelete(names) {
    deleting = names;
    const box = document.getElementById("delete-dialog");
    $("[data-delete-names]", box).replaceChildren(...names.map((name) => element("li", name)));
    ask("delete-dialog");
    $("button[data-close]", box).focus(); // the safe choice first
  }
  $("[data-delete-selected]")?.addEventListener("click", () => openDelete([...selected]));

  let packing = [];
  dialog("compress-dialog", async (values) => {
    status("Compressing…");
    const body = { directory, paths: packing, format: values.format };
    if (values.name.trim()) body.name = values.name.trim();
    const result = await send("POST", `${base}/compress`, body);
    if (!result.ok) status("");
    return after(result, (entry) => `Created ${entry.name} (${size(entry.size)}).`);
  });
  $("[data-compress]")?.addEventListener("click", () => {
    packing = [...selected];
    const box = document.getElementById("compress-dialog");
    $("[data-compress-names]", box).replaceChildren(...packing.map((name) => element("li", name)));
    ask("compress-dialog");
  });

  async function extract(path) {
    fail(""); status(`Extracting ${nameOf(path)}…`);
    const result = await send("POST", `${base}/decompress`, { path });
    if (!result.ok) { status(""); return fail(errorText(result)); }
    await after(result, (done) => `Extracted ${done.files} files and ${done.directories} folders (${size(done.bytes)}).`);
  }

  // --- Uploads: streamed from disk by the browser, progress from XMLHttpRequest --------

  function upload(file) {
    const item = element("li");
    const label = element("span", file.name, { class: "upload-name" });
    const bar = element("progress", undefined, { max: String(file.size || 1), value: "0" });
    bar.setAttribute("aria-label", `Uploading ${file.name}`);
    const state = element("span", "0%", { class: "muted", "data-upload-state": "" });
    item.append(label, bar, state);
    $("[data-uploads]").append(item);
    return new Promise((resolve) => {
      const request = new XMLHttpRequest();
      request.open("PUT", `${base}/upload?${query(join(directory, file.name))}&size=${file.size}`);
      request.setRequestHeader("X-CSRF-Token", token());
      request.setRequestHeader("Content-Type", "application/octet-stream");
      request.setRequestHeader("Accept", "application/json");
      request.upload.addEventListener("progress", (event) => {
        bar.value = event.loaded;
        state.textContent = `${Math.floor((event.loaded / (file.size || 1)) * 100)}%`;
      });
      request.addEventListener("load", () => {
        if (request.status >= 200 && request.status < 300) {
          bar.value = file.size || 1;
          state.textContent = `Done, ${size(file.size)}`;
          item.dataset.done = "";
        } else {
          let message = `The upload failed (${request.status}).`;
          try { message = JSON.parse(request.responseText).error.message; } catch { /* keep */ }
          state.textContent = message; state.className = "form-error";
          item.dataset.failed = "";
        }
        resolve();
      });
      request.addEventListener("error", () => {
        state.textContent = "The connection broke off; try again."; state.className = "form-error";
        item.dataset.failed = ""; resolve();
      });
      request.send(file);
    });
  }

  async function uploadAll(files) {
    if (!may("create") || !files.length) return;
    for (const file of files) await upload(file); // one at a time: each gets the bandwidth
    await list(); showDisk();
  }

  const picker = $("[data-upload-input]");
  $("[data-upload-pick]")?.addEventListener("click", () => picker.click());
  picker?.addEventListener("change", () => { uploadAll([...picker.files]); picker.value = ""; });
  const zone = $("[data-dropzone]");
  if (may("create")) {
    zone.addEventListener("dragover", (event) => { event.preventDefault(); zone.classList.add("dragging"); });
    zone.addEventListener("dragleave", () => zone.classList.remove("dragging"));
    zone.addEventListener("drop", (event) => {
      event.preventDefault(); zone.classList.remove("dragging");
      uploadAll([...event.dataTransfer.files]);
    });
  }

  const editor = filesEditor({
    root, $, base, may, query, send, fail, status, size, element, nameOf, parent, href,
    errorText, dialog, ask,
  });

  if (root.hasAttribute("data-problem")) {
    $("[data-loading]").hidden = true; // the path was refused: nothing to list
  } else {
    show();
  }
  showDisk();
})();
