// Task stream: a Gantt chart per worker thread.  The server windows and
// aggregates (bars thinner than a pixel arrive as per-pixel cells), so the
// page draws at most workers x width shapes whatever the number of tasks.
import { getJSON } from "./api.js";
import { colourOf } from "./dom.js";

const STATUS_COLOURS = { completed: "#16a34a", failed: "#dc2626", running: "#3b82f6" };

export async function load() {
  const canvas = document.getElementById("stream-canvas");
  const windowSeconds = Number(document.getElementById("stream-window").value);
  const byStatus = document.getElementById("stream-colour").value === "status";
  const t1 = Date.now() / 1000, t0 = t1 - windowSeconds;
  const data = await getJSON(`/api/stream?t0=${t0}&t1=${t1}&width=${canvas.width - 120}`);
  const lane = 22, left = 120, W = canvas.width;
  canvas.height = Math.max(60, data.workers.length * lane + 24);
  const ctx = canvas.getContext("2d");
  ctx.clearRect(0, 0, W, canvas.height);
  ctx.font = "11px system-ui";
  const x = (t) => left + ((t - t0) / (t1 - t0)) * (W - left);
  data.workers.forEach((name, i) => {
    ctx.fillStyle = "#374151";
    const label = name.replace(/^threadloom-/, "");
    ctx.fillText(label.length > 18 ? "…" + label.slice(-17) : label, 2, i * lane + 15);
    ctx.strokeStyle = "#f3f4f6";
    ctx.beginPath(); ctx.moveTo(left, i * lane + lane); ctx.lineTo(W, i * lane + lane); ctx.stroke();
  });
  for (const [worker, start, end, name, status] of data.bars) {
    ctx.fillStyle = byStatus ? STATUS_COLOURS[status] || "#6b7280" : colourOf(name || "?");
    if (!byStatus && status === "failed") ctx.fillStyle = "#dc2626";
    const a = Math.max(left, x(start));
    ctx.fillRect(a, worker * lane + 3, Math.max(1, x(end) - a), lane - 6);
  }
  for (const [worker, px, busy, count, failed] of data.cells) {
    ctx.fillStyle = failed ? `rgba(220,38,38,${0.3 + 0.7 * busy})` : `rgba(37,99,235,${0.2 + 0.8 * busy})`;
    ctx.fillRect(left + px, worker * lane + 3, 1, lane - 6);
  }
  ctx.fillStyle = "#6b7280";
  ctx.fillText(`${windowSeconds} s ago`, left, canvas.height - 4);
  ctx.fillText("now", W - 24, canvas.height - 4);
  document.getElementById("stream-summary").textContent =
    `${data.bars.length} bars, ${data.cells.length} aggregated cells, ${data.workers.length} workers`;
}
