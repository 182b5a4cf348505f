// The reviewer's page (templates/review.html): each submitted assignment with its image and the
// annotator's masks drawn over it; accept, or reject with a comment (webapp/crowd.py review API).
import { decodeRLE } from "./rle.js";
import { http } from "./http.js";

const root = document.getElementById("review");
const classIds = JSON.parse(root.dataset.classes);
const colors = JSON.parse(root.dataset.colors);
const list = document.getElementById("review-items");
const status = document.getElementById("review-status");

function rgb(hex) {
  const v = Number.parseInt(hex.slice(1), 16);
  return [(v >> 16) & 255, (v >> 8) & 255, v & 255];
}

async function drawItem(canvas, item) {
  const im = item.image;
  const blob = await (await http(im.urls.file)).blob();
  const bitmap = await createImageBitmap(blob);
  canvas.width = im.width;
  canvas.height = im.height;
  const ctx = canvas.getContext("2d");
  ctx.drawImage(bitmap, 0, 0);
  const layer = ctx.getImageData(0, 0, im.width, im.height);
  for (const o of item.objects) {
    const mask = decodeRLE(o.rle);
    const [r, g, b] = rgb(colors[classIds.indexOf(o.class_id)] ?? "#ff8800");
    for (let i = 0; i < mask.length; i++) {
      if (!mask[i]) continue;
      const p = 4 * i;
      layer.data[p] = (layer.data[p] + r) >> 1;
      layer.data[p + 1] = (layer.data[p + 1] + g) >> 1;
      layer.data[p + 2] = (layer.data[p + 2] + b) >> 1;
    }
  }
  ctx.putImageData(layer, 0, 0);
}

async function decide(item, decision, comment, box) {
  const resp = await http(`/api/assignments/${item.assignment.id}/review`, {
    method: "POST",
    headers: { "Content-Type": "application/json", Accept: "application/json" },
    body: JSON.stringify({ decision, comment }),
  });
  const body = await resp.json().catch(() => ({}));
  if (!resp.ok) {
    box.querySelector(".review-error").textContent = body.error || `HTTP ${resp.status}`;
    return;
  }
  box.remove();
  status.textContent = `${item.image.filename} by ${item.assignment.username}: ${decision === "accept" ? "accepted" : "sent back"}.`;
}

function renderItem(item) {
  const box = document.createElement("section");
  box.className = "card review-item";
  box.dataset.assignmentId = String(item.assignment.id);
  const canvas = document.createElement("canvas");
  const side = document.createElement("div");
  const title = document.createElement("h2");
  title.textContent = `${item.image.filename} — ${item.assignment.username}`;
  const meta = document.createElement("p");
  meta.className = "muted";
  meta.textContent = `${item.objects.length} object${item.objects.length === 1 ? "" : "s"} · submitted ${item.assignment.submitted_at}`;
  const comment = document.createElement("textarea");
  comment.placeholder = "Comment (needed to reject)";
  comment.className = "review-comment";
  const accept = document.createElement("button");
  accept.type = "button";
  accept.className = "review-accept";
  accept.textContent = "Accept";
  accept.addEventListener("click", () => decide(item, "accept", comment.value, box));
  const reject = document.createElement("button");
  reject.type = "button";
  reject.className = "review-reject";
  reject.textContent = "Reject";
  reject.addEventListener("click", () => decide(item, "reject", comment.value, box));
  const err = document.createElement("p");
  err.className = "review-error save-failed";
  side.append(title, meta, comment, accept, reject, err);
  box.append(canvas, side);
  drawItem(canvas, item).catch((e) => {
    err.textContent = `the image could not be drawn: ${e.message}`;
  });
  return box;
}

async function load() {
  const resp = await http(root.dataset.url, { headers: { Accept: "application/json" } });
  const body = await resp.json();
  list.replaceChildren(...body.items.map(renderItem));
  status.textContent = body.items.length ? `${body.items.length} submitted image(s) to review.` : "Nothing to review.";
}

load().catch((e) => {
  status.textContent = e.message;
});
