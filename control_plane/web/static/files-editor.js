// The files page's editor (files.js calls this factory with its helpers): CodeMirror 5,
// loaded on first use, a mode by the file's extension, Save (and Ctrl-S) through the files
// API, and unsaved changes guarded by beforeunload and an in-page dialog.
"use strict";

function filesEditor(kit) {
  const { root, $, base, may, query, send, fail, status, size, element, nameOf, parent, href,
    errorText, dialog, ask } = kit;
  const maxEdit = Number(root.dataset.maxEdit);
  const MODES = [
    [/\.(json|js|mjs|json5)$/i, { name: "javascript", json: true }],
    [/\.ya?ml$/i, "yaml"], [/\.toml$/i, "toml"], [/\.(sh|bash)$/i, "shell"],
    [/\.(xml|html?|svg)$/i, "xml"], [/\.(properties|cfg|conf|ini|env|txt|lang)$/i, "properties"],
  ];
  let editing = null; // { path, editor, clean }

  let loading = null;
  function loadEditorCode() {
    loading ||= root.dataset.editorScripts.split(" ").reduce((previous, src) => previous.then(() =>
      new Promise((resolve, reject) => {
        const script = element("script", undefined, { src });
        script.addEventListener("load", resolve);
        script.addEventListener("error", () => reject(new Error("The editor could not be loaded.")));
        document.head.append(script);
      })), Promise.resolve());
    return loading;
  }

  const isDirty = () => Boolean(editing?.editor && !editing.editor.isClean(editing.clean));
  function markDirty() { $("[data-dirty]").hidden = !isDirty(); }

  async function openEditor(path) {
    $("[data-browser]").hidden = true;
    const panel = $("[data-editor]");
    panel.hidden = false;
    $("[data-editor-name]").textContent = nameOf(path);
    $("[data-close-editor]").setAttribute("href", href("path", parent(path)));
    editing?.editor?.toTextArea();
    editing = { path, editor: null, clean: 0 };
    const response = await fetch(`${base}/contents?${query(path)}`, { credentials: "same-origin" });
    if (!response.ok) {
      const data = await response.json().catch(() => null);
      return fail(errorText({ status: response.status, data }));
    }
    const bytes = await response.arrayBuffer();
    if (bytes.byteLength > maxEdit) return fail("This file is too large to edit here; download it instead.");
    let text;
    try { text = new TextDecoder("utf-8", { fatal: true }).decode(bytes); } catch {
      return fail("This file is not text; download it instead.");
    }
    await loadEditorCode();
    if (editing?.path !== path) return; // the user moved on while it loaded
    const area = $("[data-editor-text]");
    area.value = text;
    const mode = MODES.find(([pattern]) => pattern.test(path))?.[1] || null;
    const editor = window.CodeMirror.fromTextArea(area, {
      lineNumbers: true, mode, readOnly: !may("write"), lineWrapping: true,
      screenReaderLabel: `Contents of ${nameOf(path)}`,
      extraKeys: { "Ctrl-S": () => save(), "Cmd-S": () => save() },
    });
    editing.editor = editor;
    editing.clean = editor.changeGeneration();
    $("[data-readonly]").hidden = may("write");
    editor.on("change", markDirty);
    markDirty();
    panel.dataset.ready = "";
  }

  function closeEditor() {
    editing?.editor?.toTextArea();
    editing = null;
    $("[data-editor]").hidden = true;
    delete $("[data-editor]").dataset.ready;
    $("[data-dirty]").hidden = true;
    $("[data-browser]").hidden = false;
  }

  async function save() {
    if (!editing?.editor || !may("write")) return;
    const button = $("[data-save]");
    button.disabled = true; fail("");
    const generation = editing.editor.changeGeneration();
    try {
      const result = await send("PUT", `${base}/contents?${query(editing.path)}`, editing.editor.getValue(), "application/octet-stream");
      if (!result.ok) return fail(errorText(result));
      editing.clean = generation;
      markDirty();
      status(`Saved ${nameOf(editing.path)} (${size(result.data.size)}).`);
    } finally { button.disabled = false; }
  }
  $("[data-save]")?.addEventListener("click", save);

  // Unsaved changes: the browser asks before the page goes, the page asks before moving on.
  window.addEventListener("beforeunload", (event) => {
    if (isDirty()) { event.preventDefault(); event.returnValue = ""; }
  });
  let decide = null;
  dialog("discard-dialog", async () => { decide?.(true); decide = null; });
  document.getElementById("discard-dialog").addEventListener("close", () => { decide?.(false); decide = null; });
  function mayLeaveEditor() {
    if (!isDirty()) return Promise.resolve(true);
    ask("discard-dialog");
    $("#discard-dialog [data-close]").focus();
    return new Promise((resolve) => { decide = resolve; });
  }

  return {
    open: openEditor,
    close: closeEditor,
    isDirty,
    mayLeave: mayLeaveEditor,
    path: () => editing?.path ?? null,
  };
}
