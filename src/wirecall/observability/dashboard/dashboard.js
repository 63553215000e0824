// The wirecall dashboard: reads /api/events (Server-Sent Events), or polls /api/snapshot
// when SSE is unavailable, and updates the page in place. No build step, no dependency.
"use strict";

const $ = (id) => document.getElementById(id);
const fmt = (x, digits = 1) => (x === null || x === undefined ? "–" : Number(x).toFixed(digits));
const pct = (x) => (100 * x).toFixed(2) + " %";

function bytes(n) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return n.toFixed(i ? 1 : 0) + " " + units[i];
}

function duration(s) {
  if (s < 120) return s.toFixed(0) + " s";
  if (s < 7200) return (s / 60).toFixed(0) + " min";
  return (s / 3600).toFixed(1) + " h";
}

// Replace a table body's rows, reusing the row elements already there (in place).
function fill(table, rows) {
  const body = $(table).tBodies[0];
  while (body.rows.length > rows.length) body.deleteRow(-1);
  rows.forEach((cells, i) => {
    const tr = body.rows[i] || body.insertRow();
    while (tr.cells.length > cells.length) tr.deleteCell(-1);
    cells.forEach((cell, j) => {
      const td = tr.cells[j] || tr.insertCell();
      const [text, cls] = Array.isArray(cell) ? cell : [cell, ""];
      if (td.textContent !== String(text)) td.textContent = text;
      td.className = cls;
    });
  });
}

function render(s) {
  $("urls").textContent = s.urls.join("  ");
  $("rate").textContent = fmt(s.rate);
  $("error-rate").textContent = pct(s.error_rate);
  $("inflight").textContent = s.inflight;
  $("uptime").textContent = duration(s.uptime);
  $("window").textContent = "(last " + s.window + " s)";
  let open = 0;
  const conns = Object.entries(s.connections).sort();
  conns.forEach(([, c]) => { open += c.open; });
  $("open-connections").textContent = open;
  fill("methods", s.methods.map((m) => [
    m.method, m.wire, m.kind, ["" + fmt(m.rate), "n"],
    [pct(m.error_rate), m.error_rate > 0 ? "n bad" : "n"],
    [fmt(m.p50_ms, 3), "n"], [fmt(m.p90_ms, 3), "n"], [fmt(m.p99_ms, 3), "n"],
    [m.inflight, "n"], [m.count, "n"],
  ]));
  fill("connections", conns.map(([wire, c]) => [
    wire, [c.open, "n"], [c.accepted, "n"], [bytes(c.received), "n"], [bytes(c.sent), "n"],
  ]));
  fill("slowest", s.slowest.map((c) => [
    c.method, c.wire, c.peer, [c.status, c.status === "OK" ? "" : "bad"],
    [fmt(c.duration_ms, 3), "n"],
  ]));
  renderCluster(s.cluster);
}

// The cluster view: a list of {target, endpoints, counters, events} (ClusterView), or any
// other JSON a custom view returns (shown as it is).
function renderCluster(cluster) {
  $("cluster-section").hidden = cluster === null;
  if (cluster === null) return;
  const known = Array.isArray(cluster) && cluster.every((c) => c && Array.isArray(c.endpoints));
  $("cluster").hidden = known;
  $("cluster-endpoints").hidden = !known;
  $("cluster-events").hidden = !known;
  if (!known) {
    $("cluster").textContent = JSON.stringify(cluster, null, 2);
    return;
  }
  const eps = [];
  const evs = [];
  cluster.forEach((c) => {
    c.endpoints.forEach((e) => eps.push([
      c.target, e.url, [e.state, e.state === "ok" ? "" : "bad"], e.breaker, e.zone || "",
      [e.pending, "n"], [fmt(e.ewma_ms, 3), "n"], [e.calls, "n"],
      [e.failures, e.failures ? "n bad" : "n"], [e.ejections, "n"],
    ]));
    c.events.slice().reverse().forEach((v) => evs.push([
      c.target, [fmt(v.ago_s, 1), "n"], v.kind, v.endpoint, v.detail,
    ]));
  });
  fill("cluster-endpoints", eps);
  fill("cluster-events", evs.slice(0, 20));
}

function live(ok) {
  const st = $("status");
  st.textContent = ok ? "live" : "disconnected";
  st.className = "pill " + (ok ? "live" : "down");
}

function poll() {
  fetch("/api/snapshot", { cache: "no-store" })
    .then((r) => r.json())
    .then((s) => { render(s); live(true); })
    .catch(() => live(false))
    .finally(() => setTimeout(poll, 1000));
}

if (window.EventSource) {
  const es = new EventSource("/api/events");
  let seen = false;
  es.onmessage = (ev) => { seen = true; render(JSON.parse(ev.data)); live(true); };
  es.onerror = () => {
    live(false);
    if (!seen) { es.close(); poll(); }  // no SSE through this path: poll instead
  };
} else {
  poll();
}
