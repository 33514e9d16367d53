"""The files page in a real Chromium, against the real control plane, a real agent and a real
game container.

A person uploads a 50 MB file (a progress bar, then the bytes on the agent's volume), edits a
config file and the running game reads the new text, creates, renames, compresses, extracts
and deletes (each behind a real dialog), and a hostile file name stays text. The attacker's
view: a sub-user without ``files.read`` sees no Files tab and is refused the page and the API;
one with ``files.read`` only sees no control that changes anything, and is refused when
forcing one; a ``..`` in the page's query is refused with a message and lists nothing.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import tracemalloc
from pathlib import Path

import pytest
from playwright.async_api import Browser, Locator, Page, expect

from tests.integration.control_plane.stack import Stack, wait_for_state
from tests.integration.control_plane.test_web_console import (
    PHONE,
    address,
    colourful_server,
    leave,
    terminal,
)
from tests.support.chromium import Watched, watched_page
from tests.support.panel import PASSWORD
from tests.support.panel import Browser as ApiBrowser

pytestmark = [pytest.mark.browser, pytest.mark.docker]
XSS = "<img src=x onerror=alert(1)>"
# A game that reads its config file when told to ("show"), as a real one reloads its MOTD.
READS_CONFIG = (
    '/bin/sh -c "echo game ready; while read -r c a; do case $c in '
    'show) cat /home/container/motd.properties;; stop) echo stopping; exit 0;; esac; done"'
)
BIG = 50 * 1024 * 1024


async def sign_in(watched: Watched, target: str, email: str) -> Page:
    """Sign in through the page a visitor of ``target`` is sent to, and come back to it."""
    page = watched.page
    await page.goto(target)
    await page.get_by_label("E-mail").fill(email)
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_url(f"**{target}")
    return page


async def put_file(owner: ApiBrowser, server_id: str, path: str, data: bytes) -> None:
    await owner.json("PUT", f"/api/v1/servers/{server_id}/files/contents?path={path}", data=data)


def row(page: Page, name: str) -> Locator:
    return page.locator("[data-entries] tr").filter(has=page.get_by_text(name, exact=True))


async def test_upload_50_mb_with_progress_and_edit_a_config_the_game_reads(
    stack: Stack, browser: Browser, tmp_path: Path
) -> None:
    server_id, _ = await colourful_server(stack, "maker@example.org", startup=READS_CONFIG)
    owner = await stack.panel.browser()
    await owner.login("maker@example.org")
    await wait_for_state(owner, server_id, "offline")
    await put_file(owner, server_id, "/motd.properties", b"motd=old words\n")
    await owner.json(
        "POST", f"/api/v1/servers/{server_id}/power", status=202, json={"action": "start"}
    )
    await wait_for_state(owner, server_id, "running")

    watched = await watched_page(browser, address(stack))
    page = await sign_in(watched, f"/servers/{server_id}/files", "maker@example.org")
    await expect(page.get_by_role("link", name="Files", exact=True)).to_have_attribute(
        "aria-current", "page"
    )
    await expect(page.locator("[data-disk-text]")).to_contain_text("used of 1.0 GiB")

    # 50 MB through the file picker: a progress bar that moves, then "Done" and the bytes.
    big = tmp_path / "world.bin"
    big.write_bytes(os.urandom(BIG))
    await page.evaluate(
        """() => { window.__progress = [];
            new MutationObserver(() => {
              for (const s of document.querySelectorAll('[data-upload-state]'))
                window.__progress.push(s.textContent);
            }).observe(document.querySelector('[data-uploads]'),
                       {subtree: true, childList: true, characterData: true}); }"""
    )
    # The control plane runs in this process: what Python allocates while it relays the
    # upload is traced, and must stay far below the file's size (it streams, never buffers).
    tracemalloc.start()
    try:
        async with page.expect_file_chooser() as chooser:
            await page.get_by_role("button", name="Upload files").click()
        await (await chooser.value).set_files(big)
        bar = page.get_by_label("Uploading world.bin")
        await expect(bar).to_have_attribute("max", str(BIG))
        await expect(page.locator("[data-uploads] li[data-done]")).to_contain_text(
            "Done, 50.0 MiB", timeout=120_000
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 16 * 1024 * 1024, peak
    assert await bar.evaluate("b => b.value") == BIG
    seen = await page.evaluate("window.__progress")
    assert any(text.endswith("%") and text != "100%" for text in seen), seen
    await expect(row(page, "world.bin")).to_contain_text("50.0 MiB")
    on_disk = stack.volume(server_id) / "world.bin"
    assert on_disk.stat().st_size == BIG
    assert (
        hashlib.sha256(on_disk.read_bytes()).digest() == hashlib.sha256(big.read_bytes()).digest()
    )
    await expect(page.locator("[data-disk-text]")).to_contain_text("(5%)")  # 50 MB of 1 GiB

    # Drag and drop: a file dropped on the list is uploaded to the folder shown.
    await page.locator("[data-dropzone]").evaluate(
        """(zone) => { const data = new DataTransfer();
            data.items.add(new File(["dropped in\\n"], "dropped.txt"));
            zone.dispatchEvent(new DragEvent("drop", {dataTransfer: data, bubbles: true})); }"""
    )
    await expect(row(page, "dropped.txt")).to_have_count(1)
    assert (stack.volume(server_id) / "dropped.txt").read_text() == "dropped in\n"

    # Edit the config with syntax highlighting; unsaved changes are announced and guarded.
    await page.get_by_role("link", name="motd.properties", exact=True).click()
    await page.wait_for_url("**/files?edit=/motd.properties")
    editor = page.locator("[data-editor][data-ready] .CodeMirror")
    await expect(editor).to_contain_text("motd=old words")
    await expect(editor.locator(".cm-def, .cm-atom, .cm-string").first).to_be_visible()
    marker = f"fresh-{secrets.token_hex(4)}"
    await editor.click()
    await page.keyboard.press("Control+End")
    await page.keyboard.type(f"greeting={marker}\n")
    await expect(page.get_by_text("Unsaved changes")).to_be_visible()
    await page.get_by_role("link", name="Close").click()
    discard = page.get_by_role("dialog", name="Discard your changes?")
    await expect(discard).to_be_visible()
    await page.keyboard.press("Escape")  # keep editing
    await expect(discard).to_be_hidden()
    assert "edit=" in page.url
    await page.get_by_role("button", name="Save").click()
    await expect(page.get_by_role("status")).to_contain_text("Saved motd.properties")
    await expect(page.get_by_text("Unsaved changes")).to_be_hidden()
    saved = (stack.volume(server_id) / "motd.properties").read_text()
    assert saved == f"motd=old words\ngreeting={marker}\n"

    # The running game reads the file it is told to: the new text is what it prints.
    await page.get_by_role("link", name="Console").click()
    await expect(page.locator("[data-console]")).to_have_attribute("data-connected", "true")
    await page.get_by_label("Command").fill("show")
    await page.get_by_label("Command").press("Enter")
    await expect(terminal(page)).to_contain_text(f"greeting={marker}", timeout=20_000)
    await watched.assert_clean()
    await leave(watched, stack)


async def test_folders_dialogs_archives_and_a_hostile_name(stack: Stack, browser: Browser) -> None:
    server_id, owner = await stack.owned_server("tidy@example.org")
    await wait_for_state(owner, server_id, "offline")
    await put_file(owner, server_id, "/" + XSS, b"payload as a name\n")
    await put_file(owner, server_id, "/config.yml", b"a: 1\n")
    watched = await watched_page(browser, address(stack))
    page = await sign_in(watched, f"/servers/{server_id}/files", "tidy@example.org")
    await watched.page.set_viewport_size(PHONE)

    # The hostile name is text: a link with that text, no element, no dialog.
    await expect(page.get_by_role("link", name=XSS, exact=True)).to_be_visible()
    assert await page.locator("[data-entries] img").count() == 0

    # New folder through its dialog, then into it: breadcrumbs and the URL follow.
    await page.get_by_role("button", name="New folder").click()
    dialog = page.get_by_role("dialog", name="New folder")
    await dialog.get_by_label("Folder name").fill("plugins")
    await dialog.get_by_label("Folder name").press("Enter")
    await expect(dialog).to_be_hidden()
    await page.get_by_role("link", name="plugins", exact=True).click()
    await page.wait_for_url("**/files?path=/plugins")
    crumbs = page.get_by_role("navigation", name="Folder")
    await expect(crumbs.locator("[aria-current]")).to_have_text("plugins")
    await expect(page.get_by_text("This folder is empty.")).to_be_visible()
    await page.go_back()
    await expect(page.get_by_role("link", name="plugins", exact=True)).to_be_visible()
    await page.go_forward()
    await expect(page.get_by_text("This folder is empty.")).to_be_visible()
    await crumbs.get_by_role("link", name="Files").click()

    # Rename (move) the config into the folder; a taken name is refused next to the field.
    await page.get_by_role("button", name="Rename config.yml").click()
    rename = page.get_by_role("dialog", name="Rename or move")
    await rename.get_by_label("New path").fill("/" + XSS)
    await rename.get_by_role("button", name="Rename").click()
    await expect(rename.locator("[role=alert]:visible").first).not_to_be_empty()
    await rename.get_by_label("New path").fill("/plugins/config.yml")
    await rename.get_by_role("button", name="Rename").click()
    await expect(rename).to_be_hidden()
    assert (stack.volume(server_id) / "plugins" / "config.yml").read_text() == "a: 1\n"

    # Compress the folder, delete it (confirmed in a dialog), extract it back.
    await page.get_by_label("Select plugins").check()
    await page.get_by_role("button", name="Compress selected").click()
    pack = page.get_by_role("dialog", name="Compress")
    await pack.get_by_label("Archive name (optional)").fill("plugins.tar.gz")
    await pack.get_by_role("button", name="Compress").click()
    await expect(row(page, "plugins.tar.gz")).to_have_count(1)
    await page.get_by_role("button", name="Delete plugins", exact=True).click()
    confirm = page.get_by_role("dialog", name="Delete for good?")
    await expect(confirm.get_by_role("button", name="Cancel")).to_be_focused()
    await page.keyboard.press("Escape")  # Cancel keeps it
    assert (stack.volume(server_id) / "plugins").is_dir()
    await page.get_by_role("button", name="Delete plugins", exact=True).click()
    await confirm.get_by_role("button", name="Delete").click()
    await expect(confirm).to_be_hidden()
    await expect(page.get_by_role("link", name="plugins", exact=True)).to_have_count(0)
    assert not (stack.volume(server_id) / "plugins").exists()
    await page.get_by_role("button", name="Extract plugins.tar.gz").click()
    await expect(page.get_by_role("status")).to_contain_text("Extracted 1 files")
    await expect(page.get_by_role("link", name="plugins", exact=True)).to_be_visible()
    assert (stack.volume(server_id) / "plugins" / "config.yml").read_text() == "a: 1\n"

    # A pull aimed at the node's own network is refused, the reason shown in the dialog.
    await page.get_by_role("button", name="Pull from URL").click()
    pull = page.get_by_role("dialog", name="Pull a file from a URL")
    await pull.get_by_label("URL (http or https)").fill("http://127.0.0.1:9/secret")
    await pull.get_by_role("button", name="Pull").click()
    await expect(pull.locator("[role=alert]:visible, .field-error:visible").first).to_have_text(
        "'127.0.0.1' is a private or reserved address"
    )
    await expect(pull).to_be_visible()
    await pull.get_by_role("button", name="Cancel").click()
    assert not (stack.volume(server_id) / "secret").exists()

    # Opening the hostile file in the editor: its name is a heading's text.
    await page.get_by_role("link", name=XSS, exact=True).click()
    await expect(page.locator("[data-editor][data-ready] .CodeMirror")).to_contain_text(
        "payload as a name"
    )
    await expect(page.get_by_role("heading", name=XSS)).to_be_visible()
    overflow = await page.evaluate("document.documentElement.scrollWidth")
    assert overflow <= PHONE["width"]

    # Unsaved changes: back asks in the page first; leaving the page asks the browser.
    await page.locator("[data-editor] .CodeMirror").click()
    await page.keyboard.type("more ")
    await expect(page.get_by_text("Unsaved changes")).to_be_visible()
    await page.go_back()
    discard = page.get_by_role("dialog", name="Discard your changes?")
    await expect(discard).to_be_visible()
    assert "edit=" in page.url
    await discard.get_by_role("button", name="Discard changes").click()
    await expect(page.get_by_role("link", name="plugins", exact=True)).to_be_visible()
    assert "edit=" not in page.url
    await page.get_by_role("link", name=XSS, exact=True).click()
    await page.locator("[data-editor][data-ready] .CodeMirror").click()
    await page.keyboard.type("again ")
    async with page.expect_event("dialog") as asked:
        await page.close(run_before_unload=True)
    assert (await asked.value).type == "beforeunload"
    assert not page.is_closed()  # the handler dismissed it: the page stays
    watched.dialogs.clear()
    await page.get_by_role("link", name="Close").click()
    await discard.get_by_role("button", name="Discard changes").click()
    await expect(discard).to_be_hidden()
    assert (stack.volume(server_id) / XSS).read_text() == "payload as a name\n"

    # A ".." in the page's query: refused with the reason, nothing listed.
    response = await page.goto(f"/servers/{server_id}/files?path=../../etc")
    assert response is not None
    assert response.status == 400
    await expect(page.get_by_role("alert").first).to_contain_text("cannot be opened")
    await expect(page.locator("[data-entries] tr")).to_have_count(0)
    await expect(page.get_by_text("passwd")).to_have_count(0)
    answer = await owner.request("GET", f"/api/v1/servers/{server_id}/files/list?path=../../etc")
    assert answer.status == 400, await answer.text()
    await watched.assert_clean()
    await leave(watched, stack)


async def test_sub_users_see_only_what_they_may_use_and_are_refused_the_rest(
    stack: Stack, browser: Browser
) -> None:
    server_id, owner = await stack.owned_server("boss@example.org")
    await put_file(owner, server_id, "/keep.txt", b"keep me\n")
    for email, permissions in (
        ("watcher@example.org", ["console.read"]),
        ("reader@example.org", ["console.read", "files.read"]),
    ):
        await stack.panel.create_user(email)
        await owner.json(
            "POST",
            f"/api/v1/servers/{server_id}/users",
            status=201,
            json={"email": email, "permissions": permissions},
        )

    # Console only: no Files tab, the page and the API refuse.
    watched = await watched_page(browser, address(stack))
    page = await sign_in(watched, f"/servers/{server_id}", "watcher@example.org")
    await expect(page.get_by_role("heading", name="survival")).to_be_visible()
    await expect(page.get_by_role("link", name="Files", exact=True)).to_have_count(0)
    response = await page.goto(f"/servers/{server_id}/files")
    assert response is not None
    assert response.status in (403, 404)
    await expect(page.locator("[data-files]")).to_have_count(0)
    listed = await page.evaluate(
        "(id) => fetch(`/api/v1/servers/${id}/files/list?path=/`).then((r) => r.status)",
        server_id,
    )
    assert listed in (403, 404)
    await watched.assert_clean()
    await watched.context.close()

    # Read only: the list and the read-only editor, no control that changes anything.
    watched = await watched_page(browser, address(stack))
    page = await sign_in(watched, f"/servers/{server_id}/files", "reader@example.org")
    await expect(page.get_by_role("link", name="keep.txt", exact=True)).to_be_visible()
    for control in ("Upload files", "New folder", "Pull from URL", "Compress selected"):
        await expect(page.get_by_role("button", name=control)).to_have_count(0)
    await expect(page.get_by_role("button", name="Rename keep.txt")).to_have_count(0)
    await expect(page.get_by_role("button", name="Delete keep.txt")).to_have_count(0)
    await expect(page.locator("dialog")).to_have_count(1)  # only the discard question
    await page.get_by_role("link", name="keep.txt", exact=True).click()
    await expect(page.locator("[data-editor][data-ready] .CodeMirror")).to_contain_text("keep me")
    await expect(page.get_by_text("Read only")).to_be_visible()
    await expect(page.get_by_role("button", name="Save")).to_have_count(0)
    # Forced from the page with its session and CSRF token: refused, the file unchanged.
    forced = await page.evaluate(
        """async (id) => {
            const token = document.querySelector('meta[name="csrf-token"]').content;
            const put = await fetch(`/api/v1/servers/${id}/files/contents?path=/keep.txt`, {
                method: "PUT", headers: {"X-CSRF-Token": token}, body: "overwritten"});
            const del = await fetch(`/api/v1/servers/${id}/files/delete`, {
                method: "POST", body: JSON.stringify({paths: ["/keep.txt"]}),
                headers: {"X-CSRF-Token": token, "Content-Type": "application/json"}});
            return [put.status, del.status];
        }""",
        server_id,
    )
    assert forced == [403, 403]
    assert (stack.volume(server_id) / "keep.txt").read_text() == "keep me\n"
    await watched.assert_clean()
    await leave(watched, stack)
