// The admin's project page (templates/admin/project.html): upload with per-file results, the
// images and their feature status, live progress over Socket.IO, retry of failed images.
// Socket.IO events (webapp/realtime.py): "image_status" {project_id, image_id, status, error},
// "project_progress" {project_id, total, pending, running, done, failed}.
import { io } from "/vendor/socket.io/socket.io.esm.min.js";
import { http } from "./http.js";

const root = document.getElementById("project");
const projectId = Number(root.dataset.projectId);
const imagesBody = document.querySelector("#images tbody");
const rows = new Map(); // image id -> <tr>

function cell(text, className) {
  const td = document.createElement("td");
  td.textContent = text;
  if (className) td.className = className;
  return td;
}

function statusCell(tr, status, error) {
  const td = tr.querySelector(".feature");
  td.textContent = status + (error ? `: ${error}` : "");
  td.className = `feature status-${status}`;
  const retry = tr.querySelector("button.retry");
  retry.hidden = status !== "failed";
}

async function postJSON(url) {
  const resp = await http(url, { method: "POST", headers: { Accept: "application/json" } });
  const body = await resp.json().catch(() => ({}));
  if (!resp.ok) throw new Error(body.error || `${resp.status} ${resp.statusText}`);
  return body;
}

function renderImage(im) {
  let tr = rows.get(im.id);
  if (!tr) {
    tr = document.createElement("tr");
    tr.dataset.imageId = String(im.id);
    tr.append(cell(String(im.id)), cell(im.filename), cell(`${im.width}×${im.height}`));
    const feature = cell("");
    feature.className = "feature";
    tr.append(feature, cell(im.annotation_status, "annotation"));
    const actions = document.createElement("td");
    const retry = document.createElement("button");
    retry.type = "button";
    retry.className = "retry";
    retry.textContent = "Retry";
    retry.addEventListener("click", async () => {
      retry.disabled = true;
      try {
        await postJSON(`/api/images/${im.id}/retry`);
      } catch (e) {
        alert(e.message);
      } finally {
        retry.disabled = false;
      }
    });
    const gold = document.createElement("button");
    gold.type = "button";
    gold.className = "gold";
    const goldText = (on) => (on ? "Gold ✓ (unmark)" : "Mark gold");
    gold.textContent = goldText(im.is_gold);
    gold.dataset.gold = im.is_gold ? "1" : "0";
    gold.title = "A gold image: its reference masks are the objects you saved on it; it is mixed into every annotator's queue";
    gold.addEventListener("click", async () => {
      const on = gold.dataset.gold !== "1";
      try {
        const resp = await http(`/api/images/${im.id}/gold`, {
          method: "POST",
          headers: { "Content-Type": "application/json", Accept: "application/json" },
          body: JSON.stringify({ gold: on }),
        });
        const body = await resp.json().catch(() => ({}));
        if (!resp.ok) throw new Error(body.error || `HTTP ${resp.status}`);
        gold.dataset.gold = on ? "1" : "0";
        gold.textContent = goldText(on);
      } catch (e) {
        alert(e.message);
      }
    });
    actions.append(retry, gold);
    tr.append(actions);
    rows.set(im.id, tr);
    imagesBody.append(tr);
  }
  statusCell(tr, im.feature_status, im.feature_error);
}

function renderProgress(p) {
  const pct = p.total ? Math.round((100 * p.done) / p.total) : 0;
  document.getElementById("progress-bar").style.width = `${pct}%`;
  document.getElementById("progress").setAttribute("aria-valuenow", String(pct));
  document.getElementById("progress-text").textContent =
    `${p.done} of ${p.total} images ready` +
    (p.running ? `, ${p.running} computing` : "") +
    (p.pending ? `, ${p.pending} waiting` : "") +
    (p.failed ? `, ${p.failed} failed` : "");
  document.getElementById("retry-failed").hidden = !p.failed;
}

async function loadImages() {
  const resp = await http(root.dataset.imagesUrl, { headers: { Accept: "application/json" } });
  const body = await resp.json();
  for (const im of body.images) renderImage(im);
}

function renderResults(body) {
  const table = document.getElementById("upload-results");
  const tbody = table.querySelector("tbody");
  tbody.replaceChildren();
  for (const r of body.results || []) {
    const tr = document.createElement("tr");
    tr.append(cell(r.file), cell(r.status, `result-${r.status}`), cell(r.message));
    tbody.append(tr);
  }
  table.hidden = !(body.results || []).length;
  const c = body.counts || {};
  document.getElementById("upload-status").textContent = body.counts
    ? `${c.added} added, ${c.duplicate} duplicates, ${c.rejected} rejected`
    : body.error || "upload failed";
}

document.getElementById("upload-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const input = document.getElementById("upload-files");
  if (!input.files.length) return;
  const form = new FormData();
  for (const f of input.files) form.append("files", f, f.name);
  document.getElementById("upload-status").textContent = "Uploading…";
  const resp = await http(root.dataset.uploadUrl, { method: "POST", body: form });
  const body = await resp.json().catch(() => ({ error: `${resp.status} ${resp.statusText}` }));
  renderResults(body);
  input.value = "";
  await loadImages();
});

document.getElementById("settings-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const form = ev.target;
  const body = {};
  for (const name of ["overlap", "lock_timeout_s", "gold_every", "batch_size"]) body[name] = Number(form.elements[name].value);
  const out = document.getElementById("settings-status");
  const resp = await http(form.dataset.url, {
    method: "PATCH",
    headers: { "Content-Type": "application/json", Accept: "application/json" },
    body: JSON.stringify(body),
  });
  const answer = await resp.json().catch(() => ({}));
  out.textContent = resp.ok ? "Settings saved." : answer.error || `HTTP ${resp.status}`;
});

document.getElementById("retry-failed").addEventListener("click", () =>
  postJSON(root.dataset.retryFailedUrl).catch((e) => alert(e.message)),
);

const socket = io(); // same origin: long-polling first, then upgraded to a WebSocket
socket.on("connect", () => {
  socket.emit("join_project", { project_id: projectId }, (ack) => {
    if (ack && ack.ok) renderProgress(ack.progress);
  });
});
socket.on("project_progress", (p) => {
  if (p.project_id === projectId) renderProgress(p);
});
socket.on("image_status", (s) => {
  if (s.project_id !== projectId) return;
  const tr = rows.get(s.image_id);
  if (tr) statusCell(tr, s.status, s.error);
  else loadImages();
});

loadImages();
