// The project dashboard (templates/admin/dashboard.html): progress per annotator, seconds and
// clicks per object (NoC of real annotators) with their histograms, gold IoU and agreement.
// It reloads /api/projects/<pid>/dashboard whenever the server sends "dashboard_changed" in the
// room the page joins with "join_dashboard" (webapp/realtime.py); bursts are coalesced.
import { io } from "/vendor/socket.io/socket.io.esm.min.js";
import { http } from "./http.js";

const root = document.getElementById("dashboard");
const projectId = Number(root.dataset.projectId);
const fmt = (v, digits = 1) => (v === null || v === undefined ? "–" : Number(v).toFixed(digits));

/** Bars of a histogram {edges, counts} on a canvas, with the bin labels under them. */
export function drawHistogram(canvas, hist, unit) {
  const ctx = canvas.getContext("2d");
  const { width: w, height: h } = canvas;
  ctx.clearRect(0, 0, w, h);
  const n = hist.counts.length;
  const max = Math.max(1, ...hist.counts);
  const pad = { l: 40, r: 10, t: 10, b: 40 };
  const bw = (w - pad.l - pad.r) / n;
  ctx.font = "20px system-ui, sans-serif";
  ctx.fillStyle = "#52606d";
  ctx.textAlign = "right";
  ctx.fillText(String(max), pad.l - 6, pad.t + 16);
  ctx.fillText("0", pad.l - 6, h - pad.b);
  ctx.textAlign = "center";
  for (let i = 0; i < n; i++) {
    const bh = ((h - pad.t - pad.b) * hist.counts[i]) / max;
    ctx.fillStyle = "#3ebd93";
    ctx.fillRect(pad.l + i * bw + 2, h - pad.b - bh, bw - 4, bh);
    ctx.fillStyle = "#52606d";
    const label = i === n - 1 ? `${hist.edges[i]}+` : `${hist.edges[i]}`;
    ctx.fillText(label, pad.l + (i + 0.5) * bw, h - pad.b + 24);
  }
  ctx.textAlign = "left";
  ctx.fillText(unit, pad.l, h - 4);
}

function cell(text) {
  const td = document.createElement("td");
  td.textContent = text;
  return td;
}

export function render(d) {
  const im = d.images;
  document.getElementById("dash-images").textContent =
    `${im.submitted} of ${im.total} images submitted, ${im.open} open` + (im.gold ? `, ${im.gold} gold` : "") +
    ` · ${d.settings.overlap} annotator${d.settings.overlap === 1 ? "" : "s"} per image`;
  const body = document.querySelector("#dash-annotators tbody");
  body.replaceChildren(
    ...d.annotators.map((a) => {
      const tr = document.createElement("tr");
      tr.dataset.username = a.username;
      tr.append(
        cell(a.username), cell(a.active), cell(a.submitted), cell(a.accepted), cell(a.rejected), cell(a.objects),
        cell(fmt(a.seconds_per_object.median)), cell(fmt(a.clicks_per_object.mean, 2)),
        cell(fmt(a.gold_iou, 3)), cell(fmt(a.agreement, 3)),
      );
      return tr;
    }),
  );
  drawHistogram(document.getElementById("plot-clicks"), d.clicks_per_object.histogram, "clicks");
  drawHistogram(document.getElementById("plot-seconds"), d.seconds_per_object.histogram, "seconds");
  document.getElementById("clicks-summary").textContent =
    `${d.clicks_per_object.n} objects · mean ${fmt(d.clicks_per_object.mean, 2)} · median ${fmt(d.clicks_per_object.median)} · p90 ${fmt(d.clicks_per_object.p90)}`;
  document.getElementById("seconds-summary").textContent =
    `mean ${fmt(d.seconds_per_object.mean)} s · median ${fmt(d.seconds_per_object.median)} s · p90 ${fmt(d.seconds_per_object.p90)} s`;
  document.getElementById("dash-updated").textContent = `Updated ${new Date().toLocaleTimeString()}.`;
}

let loading = null;
let again = false;
window.__dashboard = { loads: 0, data: null, joined: false };

async function load() {
  if (loading) {
    again = true; // coalesce: one more load after this one
    return loading;
  }
  loading = (async () => {
    do {
      again = false;
      const resp = await http(root.dataset.url, { headers: { Accept: "application/json" } });
      if (resp.ok) {
        const d = await resp.json();
        window.__dashboard.data = d;
        window.__dashboard.loads++;
        render(d);
      }
    } while (again);
  })().finally(() => {
    loading = null;
  });
  return loading;
}

const socket = io();
socket.on("connect", () =>
  socket.emit("join_dashboard", { project_id: projectId }, (ack) => {
    window.__dashboard.joined = Boolean(ack?.ok);
    load();
  }),
);
socket.on("dashboard_changed", (e) => {
  if (e.project_id === projectId) load();
});
load();
