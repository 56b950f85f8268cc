// Profile: per-name timings, tuning advice, and a flame graph of the sampled
// stacks (drawn on a canvas from the speedscope export; no library).
import { getJSON } from "./api.js";
import { clear, el, seconds } from "./dom.js";

const ROW = 18;
let data = null;
let zoom = null; // the node the graph is zoomed into (null: the root)
let boxes = []; // [x, y, w, node] of the last drawing, for hover and click

export function init() {
  document.getElementById("profile-name").addEventListener("change", () => { zoom = null; draw(); });
  const canvas = document.getElementById("flame-canvas");
  canvas.addEventListener("mousemove", (event) => hover(canvas, event));
  canvas.addEventListener("mouseleave", () => { document.getElementById("flame-tip").textContent = ""; });
  canvas.addEventListener("click", (event) => {
    const node = hit(canvas, event);
    zoom = node && node !== zoom && node.parent ? node : null;
    draw();
  });
}

export async function load() {
  try { data = await getJSON("/api/profile"); } catch (error) { data = { error: String(error) }; }
  const note = document.getElementById("profile-source");
  if (!data.report) {
    note.textContent = data.error || "no profile: start the pool with profile=True, or run with --profile";
    clear(document.querySelector("#profile-table tbody"));
    clear(document.getElementById("profile-advice"));
    clear(document.getElementById("profile-name"));
    draw();
    return;
  }
  const r = data.report;
  note.textContent = `${data.source}: ${r.samples} samples at ${r.sample_rate} Hz over ${seconds(r.duration)}; ` +
    `task CPU ${r.gil_load.toFixed(2)} cores of ${r.cores}; ${(r.coverage * 100).toFixed(0)}% of tasks timed`;
  table(r);
  advice(r);
  names();
  draw();
}

function table(r) {
  const body = clear(document.querySelector("#profile-table tbody"));
  for (const n of r.names) {
    body.append(el("tr", { "data-name": n.name },
      el("td", { text: n.name }), el("td", { text: n.kind }), el("td", { text: n.tasks }), el("td", { text: n.attempts }),
      el("td", { text: seconds(n.wall.p50) }), el("td", { text: seconds(n.wall.p90) }), el("td", { text: seconds(n.wall.p99) }),
      el("td", { text: `${(n.cpu_share * 100).toFixed(0)}%` }),
      el("td", { text: seconds(n.wait.p50) }), el("td", { text: seconds(n.wait.p90) }), el("td", { text: n.samples })));
  }
}

function advice(r) {
  const list = clear(document.getElementById("profile-advice"));
  if (!r.recommendations.length) list.append(el("li", { text: "nothing measured calls for a change" }));
  for (const a of r.recommendations) {
    list.append(el("li", { "data-kind": a.kind }, el("strong", { text: `${a.subject}: ` }), a.advice,
      el("div", { class: "muted", text: `because ${a.reason}` })));
  }
}

function names() {
  const select = document.getElementById("profile-name");
  const previous = select.value;
  clear(select);
  for (const p of data.speedscope.profiles) select.append(el("option", { value: p.name, text: p.name }));
  if ([...select.options].some((o) => o.value === previous)) select.value = previous;
}

// The call tree of one speedscope "sampled" profile: stacks are root first.
function tree(profile, frames) {
  const root = { name: profile.name, file: "", line: 0, total: 0, children: new Map(), parent: null, depth: 0 };
  profile.samples.forEach((stack, i) => {
    const weight = profile.weights[i];
    root.total += weight;
    let node = root;
    for (const index of stack) {
      let child = node.children.get(index);
      if (!child) {
        const f = frames[index];
        child = { name: f.name, file: f.file || "", line: f.line || 0, total: 0, children: new Map(), parent: node, depth: node.depth + 1 };
        node.children.set(index, child);
      }
      child.total += weight;
      node = child;
    }
  });
  return root;
}

function colour(name) {
  let h = 0;
  for (const c of name) h = (h * 31 + c.charCodeAt(0)) % 360;
  return `hsl(${20 + (h % 40)}, 85%, ${55 + (h % 15)}%)`; // warm, like a flame
}

function draw() {
  const canvas = document.getElementById("flame-canvas");
  const ctx = canvas.getContext("2d");
  boxes = [];
  const select = document.getElementById("profile-name");
  const profile = data && data.speedscope && data.speedscope.profiles.find((p) => p.name === select.value);
  if (!profile) { ctx.clearRect(0, 0, canvas.width, canvas.height); return; }
  const root = tree(profile, data.speedscope.shared.frames);
  const top = zoom && zoom.total ? zoom : root;
  let depth = 0;
  (function measure(node) { depth = Math.max(depth, node.depth); node.children.forEach(measure); })(top);
  canvas.width = canvas.parentElement.clientWidth || 1200;
  canvas.height = (depth - top.depth + 1) * ROW + 4;
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  ctx.font = "12px system-ui, sans-serif";
  ctx.textBaseline = "middle";
  const scale = canvas.width / top.total;
  // The zoomed node's ancestors stay on top, full width, to click back out.
  function place(node, x, y) {
    const w = node.total * scale;
    if (w < 0.5) return;
    ctx.fillStyle = node === root ? "#9ca3af" : colour(node.name);
    ctx.fillRect(x, y, Math.max(w - 1, 0.5), ROW - 1);
    if (w > 40) {
      ctx.fillStyle = "#111827";
      const label = `${node.name} ${((node.total / root.total) * 100).toFixed(1)}%`;
      ctx.save();
      ctx.beginPath();
      ctx.rect(x, y, w - 2, ROW);
      ctx.clip();
      ctx.fillText(label, x + 3, y + ROW / 2);
      ctx.restore();
    }
    boxes.push([x, y, w, node]);
    let cx = x;
    for (const child of [...node.children.values()].sort((a, b) => b.total - a.total)) {
      place(child, cx, y + ROW);
      cx += child.total * scale;
    }
  }
  place(top, 0, 0);
  canvas.dataset.frames = String(boxes.length);
  canvas.dataset.root = top.name;
}

function hit(canvas, event) {
  const rect = canvas.getBoundingClientRect();
  const x = (event.clientX - rect.left) * (canvas.width / rect.width);
  const y = (event.clientY - rect.top) * (canvas.height / rect.height);
  for (const [bx, by, bw, node] of boxes) if (x >= bx && x < bx + bw && y >= by && y < by + ROW) return node;
  return null;
}

function hover(canvas, event) {
  const node = hit(canvas, event);
  const tip = document.getElementById("flame-tip");
  if (!node) { tip.textContent = ""; return; }
  let root = node;
  while (root.parent) root = root.parent;
  const where = node.file ? ` (${node.file}:${node.line})` : "";
  tip.textContent = `${node.name}${where}: ${seconds(node.total)} sampled, ${((node.total / root.total) * 100).toFixed(1)}% of ${root.name}`;
}
