// The console page's socket, opened as soon as this small file has run: before xterm.js and
// uPlot are downloaded and compiled (the slow part of a first visit), so that the handshake
// runs meanwhile. Frames that arrive before console.js is ready are kept in order; console.js
// adopts the socket and them (window.stellarEarlyConsole), or opens its own if it has closed.
"use strict";

(() => {
  const root = document.querySelector("[data-console]");
  if (!root || !("WebSocket" in window)) return;
  const path = `/api/v1/servers/${encodeURIComponent(root.dataset.serverId)}/console`;
  const scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
  performance.mark("console-connecting");
  const socket = new WebSocket(`${scheme}//${window.location.host}${path}`);
  const frames = [];
  const keep = (message) => { frames.push(message); };
  socket.addEventListener("message", keep);
  window.stellarEarlyConsole = { socket, frames, keep };
})();
