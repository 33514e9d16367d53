// The server list: each server's CPU and memory, refreshed from one request for the whole
// page (GET /api/v1/resource-use, the page's own ?page and ?q) while the tab is visible.
// Only rows the page marked data-watched (the caller holds stats.read) are touched.
"use strict";

(() => {
  const table = document.querySelector("[data-resource-use]");
  if (!table) return;
  const EVERY_MS = 10000;
  const MIB = 1024 * 1024;
  const here = new URLSearchParams(window.location.search);
  const query = new URLSearchParams();
  for (const key of ["page", "q"]) if (here.get(key)) query.set(key, here.get(key));
  const numbers = new Intl.NumberFormat(undefined, { maximumFractionDigits: 0 });

  async function refresh() {
    if (document.visibilityState !== "visible") return;
    const result = await api("GET", `/api/v1/resource-use?${query}`);
    if (!result.ok) return;  // signed out or throttled: the figures shown stay
    const use = new Map(result.data.data.map((item) => [item.server_id, item]));
    for (const row of table.querySelectorAll("tr[data-watched]")) {
      const now = use.get(row.dataset.serverId);
      row.querySelector('[data-use="cpu"]').textContent = now ? `${now.cpu_percent.toFixed(1)} %` : "–";
      row.querySelector('[data-use="memory"]').textContent =
        now ? `${numbers.format(Math.floor(now.memory_bytes / MIB))} MiB` : "–";
    }
    table.dataset.refreshedAt = String(Date.now());
  }

  setInterval(refresh, EVERY_MS);
  document.addEventListener("visibilitychange", refresh);
})();
