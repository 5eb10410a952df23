// The console page: polls the JSON API under /api/ and draws the cluster and the charts as SVG.
// Plain DOM calls and textContent only (no innerHTML): names, keys and error messages come from users.
// SPDX-License-Identifier: AGPL-3.0-or-later
"use strict";

const SVG = "http://www.w3.org/2000/svg";
let csrf = "";
let interval = 5;

function el(tag, attrs = {}, ...children) {
  const node = tag.startsWith("svg:") ? document.createElementNS(SVG, tag.slice(4)) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v !== undefined && v !== null && v !== false) node.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return node;
}

function human(n) {
  if (n === null || n === undefined) return "";
  const units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
  let i = 0;
  while (Math.abs(n) >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return i === 0 ? `${Math.round(n)} B` : `${n.toFixed(1)} ${units[i]}`;
}

function when(ts) {
  return ts ? new Date(ts * 1000).toLocaleString() : "";
}

function showError(message) {
  const p = document.getElementById("error");
  p.textContent = message || "";
  p.hidden = !message;
}

async function api(method, path, body) {
  const options = { method, headers: {}, credentials: "same-origin" };
  if (method !== "GET") {
    options.headers["X-CSRF-Token"] = csrf;
    options.headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(body || {});
  }
  const resp = await fetch(path, options);
  if (resp.status === 401) { window.location.assign("/login"); throw new Error("logged out"); }
  const data = await resp.json();
  if (!resp.ok) throw new Error((data.error && data.error.message) || `${method} ${path}: ${resp.status}`);
  return data;
}

// -- the cluster picture --------------------------------------------------------------------------------

const VOL_W = 150, VOL_H = 64, GAP = 8, HEAD = 20, PAD = 8;

function tree(volumes) {
  // site -> rack -> host -> [volume rows], in location order (the API sorts by location).
  const sites = new Map();
  for (const v of volumes) {
    const [site = "?", rack = "?", host = "?"] = (v.location || "").split(".");
    if (!sites.has(site)) sites.set(site, new Map());
    const racks = sites.get(site);
    if (!racks.has(rack)) racks.set(rack, new Map());
    const hosts = racks.get(rack);
    if (!hosts.has(host)) hosts.set(host, []);
    hosts.get(host).push(v);
  }
  return sites;
}

function volumeState(v) {
  if (v.dead) return v.up ? "UNREACHABLE" : "DOWN";
  return v.locked ? "LOCKED" : "up";
}

function drawVolume(v, x, y) {
  const cls = ["volume", v.dead ? "dead" : "live", v.locked ? "locked" : ""].join(" ").trim();
  const g = el("svg:g", { class: cls, transform: `translate(${x},${y})`, "data-volume": v.volume,
                          "data-state": volumeState(v) });
  g.append(el("svg:title", {}, `${v.volume} at ${v.addr || "?"} (${v.location})`));
  g.append(el("svg:rect", { class: "box", width: VOL_W, height: VOL_H, rx: 4 }));
  const name = (v.location || "").split(".").slice(3).join(".") || v.volume;
  g.append(el("svg:text", { x: 6, y: 14 }, name));
  g.append(el("svg:text", { class: "state", x: VOL_W - 6, y: 14, "text-anchor": "end" }, volumeState(v)));
  const used = v.total_bytes ? 1 - (v.free_bytes || 0) / v.total_bytes : 0;
  g.append(el("svg:rect", { class: "bar-bg", x: 6, y: 22, width: VOL_W - 12, height: 8, rx: 2 }));
  g.append(el("svg:rect", { class: "bar", x: 6, y: 22, width: Math.max(0, (VOL_W - 12) * used), height: 8, rx: 2 }));
  g.append(el("svg:text", { x: 6, y: 44 }, `${Math.round(used * 100)} % used, ${human(v.free_bytes)} free`));
  g.append(el("svg:text", { x: 6, y: 58 }, `score put ${v.score_put ?? "?"} get ${v.score_get ?? "?"}`));
  if (v.dead) {
    g.append(el("svg:line", { class: "cross", x1: 0, y1: 0, x2: VOL_W, y2: VOL_H }));
    g.append(el("svg:line", { class: "cross", x1: VOL_W, y1: 0, x2: 0, y2: VOL_H }));
  }
  return g;
}

function frame(label, x, y, w, h) {
  const g = el("svg:g", { class: "group", transform: `translate(${x},${y})` });
  g.append(el("svg:rect", { class: "frame", width: w, height: h, rx: 6 }));
  g.append(el("svg:text", { class: "label", x: 6, y: 14 }, label));
  return g;
}

function drawCluster(volumes) {
  // Hosts are columns of volumes; racks hold hosts side by side, sites hold racks side by side.
  const svg = document.getElementById("cluster");
  svg.replaceChildren();
  let x = 0, height = 0;
  for (const [site, racks] of tree(volumes)) {
    const siteX = x;
    let rx = siteX + PAD, siteH = 0;
    const layer = [];
    for (const [rack, hosts] of racks) {
      const rackX = rx;
      let hx = rackX + PAD, rackH = 0;
      for (const [host, vols] of hosts) {
        const hostH = HEAD + vols.length * (VOL_H + GAP) + PAD;
        layer.push(frame(host, hx, 2 * HEAD + PAD, VOL_W + 2 * PAD, hostH));
        vols.forEach((v, i) => layer.push(drawVolume(v, hx + PAD, 3 * HEAD + PAD + i * (VOL_H + GAP))));
        hx += VOL_W + 3 * PAD;
        rackH = Math.max(rackH, hostH);
      }
      layer.unshift(frame(rack, rackX, HEAD, hx - rackX, rackH + HEAD + 2 * PAD));
      rx = hx + PAD;
      siteH = Math.max(siteH, rackH + 2 * HEAD + 3 * PAD);
    }
    svg.append(frame(site, siteX, 0, rx - siteX, siteH), ...layer);
    x = rx + 2 * PAD;
    height = Math.max(height, siteH + 2);
  }
  svg.setAttribute("viewBox", `0 0 ${Math.max(x, 1)} ${Math.max(height, 1)}`);
  svg.style.maxHeight = `${Math.max(height, 40)}px`;
}

function lockButton(v) {
  const verb = v.locked ? "unlock" : "lock";
  const b = el("button", { type: "button", class: verb, id: `${verb}-${v.volume}`, "data-volume": v.volume }, verb);
  b.addEventListener("click", async () => {
    b.disabled = true;
    try { await api("POST", `/api/volumes/${encodeURIComponent(v.volume)}/${verb}`); showError(""); }
    catch (e) { showError(e.message); }
    await refreshCluster();
  });
  return b;
}

function drawVolumeTable(volumes) {
  const body = document.querySelector("#volumes tbody");
  body.replaceChildren(...volumes.map((v) => {
    const used = v.total_bytes ? `${Math.round(100 * (1 - (v.free_bytes || 0) / v.total_bytes))} %` : "";
    const state = [volumeState(v), v.job_label].filter(Boolean).join(", ");
    const cls = [v.dead ? "dead" : "", v.locked ? "locked" : ""].join(" ").trim() || undefined;
    return el("tr", { class: cls, "data-volume": v.volume },
      el("td", {}, v.volume), el("td", {}, v.location || ""), el("td", {}, v.addr || ""),
      el("td", {}, v.score_put ?? ""), el("td", {}, v.score_get ?? ""), el("td", {}, used),
      el("td", {}, v.chunks ?? ""), el("td", { class: "state" }, state),
      el("td", {}, v.up || v.locked ? lockButton(v) : ""));
  }));
}

function drawJobs(jobs) {
  const body = document.querySelector("#jobs tbody");
  body.replaceChildren(...jobs.map((j) => el("tr", { class: `job ${j.kind}` },
    el("td", {}, j.kind), el("td", {}, j.volume), el("td", {}, j.location),
    el("td", {}, el("progress", { max: j.total || 1, value: j.total ? j.done : undefined }), j.label))));
  document.getElementById("jobs").hidden = jobs.length === 0;
  document.getElementById("no-jobs").hidden = jobs.length !== 0;
}

async function refreshCluster() {
  const data = await api("GET", "/api/cluster");
  drawCluster(data.volumes);
  drawVolumeTable(data.volumes);
  drawJobs(data.jobs);
}

// -- charts -------------------------------------------------------------------------------------------------

function lineChart(svg, samples, lines, format) {
  const W = 600, H = 180, L = 70, R = 10, T = 18, B = 22;
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  svg.replaceChildren();
  // The last hour, or less while the console has not been up that long: a young console's few samples
  // would otherwise huddle at the right edge.
  const now = Date.now() / 1000;
  const first = samples.length ? samples[0].t : now - 60;
  const start = Math.max(now - 3600, Math.min(first, now - 60));
  const span = now - start;
  let max = 0;
  for (const s of samples) for (const l of lines) if (s[l.key] !== null) max = Math.max(max, s[l.key]);
  max = max > 0 ? max * 1.1 : 1;
  const x = (t) => L + ((t - start) / span) * (W - L - R);
  const y = (v) => H - B - (v / max) * (H - T - B);
  const axis = el("svg:g", { class: "axis" });
  for (let i = 0; i <= 4; i++) {
    const v = (max * i) / 4;
    axis.append(el("svg:line", { x1: L, x2: W - R, y1: y(v), y2: y(v) }),
      el("svg:text", { x: L - 6, y: y(v) + 4, "text-anchor": "end" }, format(v)));
  }
  for (let i = 0; i <= 4; i++) {
    const ago = (span * (4 - i)) / 4;
    const label = i === 4 ? "now" : span >= 240 ? `-${Math.round(ago / 60)} min` : `-${Math.round(ago)} s`;
    axis.append(el("svg:text", { x: x(now - ago), y: H - 6, "text-anchor": "middle" }, label));
  }
  svg.append(axis);
  const legend = el("svg:g", { class: "legend" });
  lines.forEach((l, i) => {
    // A null is a round with no rate yet (the first): the line breaks there rather than drop to 0.
    let d = "", pen = "M";
    for (const s of samples) {
      if (s[l.key] === null || s.t < start) { pen = "M"; continue; }
      d += `${pen}${x(s.t).toFixed(1)},${y(s[l.key]).toFixed(1)} `;
      pen = "L";
    }
    if (d) svg.append(el("svg:path", { class: l.cls, d }));
    const last = [...samples].reverse().find((s) => s[l.key] !== null);
    legend.append(el("svg:rect", { class: l.cls, x: L + i * 190, y: 4, width: 10, height: 10 }),
      el("svg:text", { x: L + 14 + i * 190, y: 13 }, `${l.label}${last ? ": " + format(last[l.key]) : ""}`));
  });
  svg.append(legend);
}

async function refreshSeries() {
  const data = await api("GET", "/api/series");
  const rate = (v) => `${human(v)}/s`;
  lineChart(document.getElementById("throughput"), data.samples,
    [{ key: "bytes_in", cls: "in", label: "written" }, { key: "bytes_out", cls: "out", label: "read" }], rate);
  lineChart(document.getElementById("space"), data.samples, [{ key: "free_bytes", cls: "free", label: "free" }],
    human);
}

// -- buckets, dead letters, health -----------------------------------------------------------------------

async function refreshBuckets() {
  const { buckets } = await api("GET", "/api/buckets");
  document.querySelector("#buckets tbody").replaceChildren(...buckets.map((b) => el("tr", {},
    el("td", {}, b.account), el("td", {}, b.bucket), el("td", {}, b.objects), el("td", {}, human(b.bytes)),
    el("td", {}, b.policy), el("td", {}, b.versioning))));
  document.getElementById("buckets").hidden = buckets.length === 0;
  document.getElementById("no-buckets").hidden = buckets.length !== 0;
}

async function retry(ids) {
  try {
    const { revived } = await api("POST", "/api/dead/retry", ids ? { ids } : {});
    showError("");
    document.getElementById("health").textContent = `${revived} dead letters back on the retry list`;
  } catch (e) { showError(e.message); }
  await refreshDead();
}

async function refreshDead() {
  const { dead } = await api("GET", "/api/dead");
  document.querySelector("#dead tbody").replaceChildren(...dead.map((d) => {
    const e = d.event || {}, data = e.data || {};
    const where = ["bucket", "key"].map((k) => data[k]).filter((v) => v !== undefined && v !== null).join("/");
    const b = el("button", { type: "button", class: "retry", id: `retry-${d.id}` }, "retry");
    b.addEventListener("click", () => retry([d.id]));
    // A container id is 64 hex digits: its head tells containers apart, the whole is in the tooltip.
    const db = String(e.db || "");
    return el("tr", { "data-dead": d.id }, el("td", {}, d.id),
      el("td", { title: `${e.type} ${db}#${e.id}` }, `${e.type} ${db.length > 16 ? db.slice(0, 12) + "…" : db}#${e.id}`),
      el("td", {}, where), el("td", {}, d.handler), el("td", {}, d.attempts), el("td", { class: "error-text" }, d.error),
      el("td", {}, when(d.last_failed)), el("td", {}, b));
  }));
  document.getElementById("dead").hidden = dead.length === 0;
  document.getElementById("no-dead").hidden = dead.length !== 0;
  document.getElementById("retry-all").hidden = dead.length === 0;
}

async function refreshHealth() {
  const h = await api("GET", "/api/health");
  const p = document.getElementById("health");
  p.className = `health ${h.ok ? "ok" : "degraded"}`;
  p.textContent = h.ok ? `OK: ${h.storage_up} storage servers up, nothing degraded`
                       : `DEGRADED: ${h.problems.join("; ")}`;
}

// -- start --------------------------------------------------------------------------------------------------

function every(seconds, fn) {
  // One call at a time per view: a slow answer delays the next poll instead of piling requests up.
  const run = async () => {
    try { await fn(); } catch (e) { if (e.message !== "logged out") showError(e.message); }
    setTimeout(run, seconds * 1000);
  };
  run();
}

async function start() {
  const session = await api("GET", "/api/session");
  csrf = session.csrf;
  interval = session.interval;
  document.getElementById("namespace").textContent = session.namespace;
  document.getElementById("retry-all").addEventListener("click", () => retry(null));
  document.getElementById("logout").addEventListener("click", async () => {
    await fetch("/logout", { method: "POST", headers: { "X-CSRF-Token": csrf }, credentials: "same-origin" });
    window.location.assign("/login");
  });
  every(2, refreshCluster);  // a dead server must show within seconds
  every(Math.max(1, interval), refreshSeries);
  every(5, refreshHealth);
  every(5, refreshDead);
  every(10, refreshBuckets);
}

document.addEventListener("DOMContentLoaded", () => start().catch((e) => showError(e.message)));
