// The console page: xterm.js fed by the console WebSocket, a command input with history,
// power buttons, resource graphs (uPlot). What is on the page was decided by the server (which
// buttons, whether the input and the graphs are there); the API and the socket refuse on their
// own whatever is sent. Output is written to the terminal as text, never parsed as HTML.
"use strict";

(() => {
  const root = document.querySelector("[data-console]");
  if (!root) return;
  const serverId = root.dataset.serverId;
  const socketPath = `/api/v1/servers/${encodeURIComponent(serverId)}/console`;
  const noticeBox = root.querySelector("[data-console-notice]");
  const noticeText = root.querySelector("[data-notice-text]");
  const reconnectButton = root.querySelector("[data-reconnect]");
  const errorBox = root.querySelector("[data-console-error]");
  const stateBadge = root.querySelector("[data-state]");
  const STATS_EVERY_MS = 3000;
  const MAX_RETRY_MS = 10000;
  const KEPT_POINTS = 300;
  const MIB = 1024 * 1024;

  // ---- notices ------------------------------------------------------------------------
  let errorTimer = null;
  function notice(text, { reconnect = false, kind = "" } = {}) {
    noticeText.textContent = text;
    noticeBox.dataset.kind = kind;
    noticeBox.hidden = false;
    reconnectButton.hidden = !reconnect;
  }
  function clearNotice(kind) {
    if (kind === undefined || noticeBox.dataset.kind === kind) noticeBox.hidden = true;
  }
  function showError(text) {
    errorBox.textContent = text;
    errorBox.hidden = false;
    clearTimeout(errorTimer);
    errorTimer = setTimeout(() => { errorBox.hidden = true; }, 10000);
  }
  function setState(state) {
    stateBadge.textContent = String(state).replace(/_/g, " ");
    stateBadge.className = `state state-${String(state).replace(/[^a-z_]/g, "")}`;
  }

  // ---- terminal -----------------------------------------------------------------------
  const term = new Terminal({
    disableStdin: true, // commands go through the input below, one checked line at a time
    convertEol: true,
    scrollback: 5000,
    fontSize: 13,
    cursorStyle: "underline",
    cursorInactiveStyle: "none",
    // A link printed by the game is not opened (no dialog, no navigation).
    linkHandler: { activate() {}, allowNonHttpProtocols: false },
    theme: { background: "#0b0d10", foreground: "#e6e9ed" },
  });
  const fit = new FitAddon.FitAddon();
  term.loadAddon(fit);
  term.open(document.getElementById("terminal"));
  const refit = () => { try { fit.fit(); } catch { /* not laid out yet */ } };
  refit();
  let resizeTimer = null;
  window.addEventListener("resize", () => {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(() => { refit(); graphs.resize(); }, 100);
  });
  const writeLine = (line) => term.write(`${String(line)}\n`);

  // ---- graphs -------------------------------------------------------------------------
  const graphs = (() => {
    const figures = root.dataset.stats === undefined ? [] : [...root.querySelectorAll("[data-graph]")];
    const plots = {};
    const data = {};
    const specs = {
      cpu: { series: [{ label: "CPU %", stroke: "#2d5bd3" }], format: (v) => `${v[0].toFixed(1)} %` },
      memory: { series: [{ label: "MiB", stroke: "#1f7a3a" }], format: (v) => `${v[0].toFixed(0)} MiB` },
      network: {
        series: [{ label: "in KiB/s", stroke: "#9a5b00" }, { label: "out KiB/s", stroke: "#b3261e" }],
        format: (v) => `in ${v[0].toFixed(1)} KiB/s, out ${v[1].toFixed(1)} KiB/s`,
      },
      disk: { series: [{ label: "MiB", stroke: "#6b4fbb" }], format: (v) => `${v[0].toFixed(0)} MiB` },
    };
    const width = (figure) => Math.max(200, figure.querySelector(".plot").clientWidth);
    for (const figure of figures) {
      const key = figure.dataset.graph;
      const spec = specs[key];
      data[key] = [[], ...spec.series.map(() => [])];
      plots[key] = new uPlot({
        width: width(figure), height: 120,
        legend: { show: false },
        cursor: { show: false },
        scales: { x: { time: true }, y: { range: (u, min, max) => [0, Math.max(1, max * 1.1)] } },
        axes: [{ stroke: "#8a949e" }, { stroke: "#8a949e", size: 50 }],
        series: [{}, ...spec.series.map((s) => ({ label: s.label, stroke: s.stroke, width: 1.5 }))],
      }, data[key], figure.querySelector(".plot"));
    }
    function redraw(key) {
      const figure = root.querySelector(`[data-graph="${key}"]`);
      const columns = data[key];
      figure.dataset.points = String(columns[0].length);
      if (columns[0].length) {
        const last = columns.slice(1).map((column) => column[column.length - 1] ?? 0);
        figure.querySelector("[data-latest]").textContent = specs[key].format(last);
      }
      plots[key].setData(columns);
      // At least the last quarter of an hour: a lone point would stretch the axis to years.
      const xs = columns[0];
      if (xs.length) {
        const end = xs[xs.length - 1];
        plots[key].setScale("x", { min: Math.min(xs[0], end - 900), max: end });
      }
    }
    function push(key, at, ...values) {
      if (!plots[key]) return;
      const columns = data[key];
      if (columns[0].length && at <= columns[0][columns[0].length - 1]) return;
      columns[0].push(at);
      values.forEach((value, i) => columns[i + 1].push(value));
      if (columns[0].length > KEPT_POINTS) for (const column of columns) column.shift();
      redraw(key);
    }
    function replace(key, rows) {
      if (!plots[key]) return;
      data[key] = [rows.map((row) => row[0]), ...specs[key].series.map((_, i) => rows.map((row) => row[i + 1]))];
      redraw(key);
    }
    function resize() {
      for (const figure of figures) {
        plots[figure.dataset.graph].setSize({ width: width(figure), height: 120 });
      }
    }
    return { enabled: figures.length > 0, push, replace, resize };
  })();

  // The last quarter of an hour from the stored history (10 s points), then live samples.
  async function seedGraphs({ diskOnly = false } = {}) {
    const result = await api("GET", `/api/v1/servers/${encodeURIComponent(serverId)}/stats/history?range=15m`);
    if (!result.ok) return;
    const points = result.data.points;
    const kib = (value) => (value ?? 0) / 1024;
    graphs.replace("disk", points.filter((p) => p.disk_used_bytes !== null).map((p) => [p.at, p.disk_used_bytes / MIB]));
    if (diskOnly) return;
    graphs.replace("cpu", points.map((p) => [p.at, p.cpu_percent]));
    graphs.replace("memory", points.map((p) => [p.at, p.memory_bytes / MIB]));
    graphs.replace("network", points.map((p) => [p.at, kib(p.network_rx_bytes_per_second), kib(p.network_tx_bytes_per_second)]));
  }

  let previous = null;
  function onStats(stats) {
    const at = stats.sampled_at;
    graphs.push("cpu", at, stats.cpu_percent);
    graphs.push("memory", at, stats.memory_bytes / MIB);
    // Rates between two samples of the same counters; a counter that went back (a restart)
    // gives no rate.
    if (previous && at > previous.sampled_at && stats.network_rx_bytes >= previous.network_rx_bytes
        && stats.network_tx_bytes >= previous.network_tx_bytes) {
      const seconds = at - previous.sampled_at;
      graphs.push("network", at, (stats.network_rx_bytes - previous.network_rx_bytes) / 1024 / seconds,
        (stats.network_tx_bytes - previous.network_tx_bytes) / 1024 / seconds);
    }
    previous = stats;
  }

  // ---- the socket ---------------------------------------------------------------------
  let socket = null;
  let attempts = 0;
  let retryTimer = null;
  let statsTimer = null;
  let slowUntil = 0;

  function send(event, args) {
    if (!socket || socket.readyState !== WebSocket.OPEN) return false;
    socket.send(JSON.stringify(args === undefined ? { event } : { event, args }));
    return true;
  }

  function pollStats() {
    clearInterval(statsTimer);
    if (!graphs.enabled) return;
    statsTimer = setInterval(() => {
      if (document.visibilityState === "visible" && Date.now() >= slowUntil) send("send stats");
    }, STATS_EVERY_MS);
    send("send stats");
  }

  function onMessage(frame) {
    const arg = Array.isArray(frame.args) ? frame.args[0] : undefined;
    switch (frame.event) {
      case "console output":
      case "install output":
        writeLine(arg);
        if (String(arg).startsWith("[stellar] output throttled")) {
          notice("The game writes faster than the console shows: some lines were dropped.", { kind: "throttled" });
          setTimeout(() => clearNotice("throttled"), 10000);
        }
        break;
      case "status":
      case "state": // a change recorded by the control plane (on any replica): docs/console.md
        setState(arg);
        break;
      case "stats":
        if (arg && typeof arg === "object") onStats(arg);
        break;
      case "error":
        if (String(arg).startsWith("too many requests")) {
          // Throttled: wait before asking for stats again; say so.
          slowUntil = Date.now() + 15000;
          notice(`Throttled: ${arg}`, { kind: "throttled" });
          setTimeout(() => clearNotice("throttled"), 15000);
        } else {
          showError(String(arg));
        }
        break;
      default:
        break;
    }
  }

  function connect() {
    clearTimeout(retryTimer);
    // The socket console-early.js opened while the scripts loaded, if it is still usable.
    const early = window.stellarEarlyConsole;
    window.stellarEarlyConsole = null;
    let current;
    if (early && early.socket.readyState <= WebSocket.OPEN) {
      current = early.socket;
      current.removeEventListener("message", early.keep);
    } else {
      const scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
      if (!performance.getEntriesByName("console-connecting").length) performance.mark("console-connecting");
      current = new WebSocket(`${scheme}//${window.location.host}${socketPath}`);
    }
    socket = current;
    const opened = () => {
      attempts = 0;
      root.dataset.connected = "true";
      clearNotice("disconnected");
      // The node sends the recent lines again on every connection: start from a clean screen.
      term.reset();
      previous = null;
      pollStats();
      markReady();  // the console is usable: the walk and bench/web.py wait for this
    };
    const received = (message) => {
      let frame;
      try { frame = JSON.parse(message.data); } catch { return; }
      if (frame && typeof frame === "object") onMessage(frame);
    };
    if (current.readyState === WebSocket.OPEN) opened();
    else current.addEventListener("open", opened);
    current.addEventListener("message", received);
    // Frames kept before this script was ready, in order (nothing can arrive in between).
    if (current === early?.socket) for (const message of early.frames) received(message);
    current.addEventListener("close", (event) => {
      if (socket !== current) return;
      clearInterval(statsTimer);
      root.dataset.connected = "false";
      if (event.code === 4403) {
        notice("Your access to this console has changed or your session has ended. Reload the page to continue.", { kind: "closed" });
        return;
      }
      retry();
    });
  }

  function retry() {
    // 1, 2, 4, 8 then 10 s, a little randomised so that many pages do not come back at once.
    const delay = Math.min(MAX_RETRY_MS, 1000 * 2 ** attempts) * (0.8 + Math.random() * 0.4);
    attempts += 1;
    const seconds = Math.max(1, Math.round(delay / 1000));
    notice(`Disconnected from the console. Reconnecting in ${seconds} s…`, { reconnect: true, kind: "disconnected" });
    retryTimer = setTimeout(() => {
      notice("Disconnected from the console. Reconnecting…", { reconnect: false, kind: "disconnected" });
      connect();
    }, delay);
  }
  reconnectButton.addEventListener("click", () => { attempts = 0; connect(); });

  // ---- command input with history -----------------------------------------------------
  const form = document.getElementById("command-form");
  if (form) {
    const input = form.querySelector("input");
    const history = [];
    let position = 0;
    let draft = "";
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const line = input.value;
      if (!line.trim()) return;
      if (!send("send command", [line])) {
        // Kept in the input: nothing typed is lost while disconnected.
        showError("Not connected: the command was not sent. It is still in the input.");
        return;
      }
      if (history[history.length - 1] !== line) history.push(line);
      if (history.length > 100) history.shift();
      position = history.length;
      draft = "";
      input.value = "";
    });
    input.addEventListener("keydown", (event) => {
      if (event.key === "ArrowUp" && position > 0) {
        if (position === history.length) draft = input.value;
        position -= 1;
        input.value = history[position];
      } else if (event.key === "ArrowDown" && position < history.length) {
        position += 1;
        input.value = position === history.length ? draft : history[position];
      } else {
        return;
      }
      event.preventDefault();
      input.setSelectionRange(input.value.length, input.value.length);
    });
  }

  // ---- power buttons (shown by the server only where the caller may use them) ---------
  for (const button of root.querySelectorAll("[data-power]")) {
    button.addEventListener("click", async () => {
      button.disabled = true;
      try {
        const result = await api("POST", `/api/v1/servers/${encodeURIComponent(serverId)}/power`, { action: button.dataset.power });
        if (!result.ok) showError(result.data?.error?.message || `The request failed (${result.status}).`);
        else if (result.data?.state) setState(result.data.state);
      } finally {
        button.disabled = false;
      }
    });
  }

  if (graphs.enabled) {
    seedGraphs().catch(() => {});
    // Disk use is sampled by the node less often than the rest and only kept in the history.
    setInterval(() => {
      if (document.visibilityState === "visible") seedGraphs({ diskOnly: true }).catch(() => {});
    }, 30000);
  }
  connect();
})();
