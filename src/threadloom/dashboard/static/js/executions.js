// Executions: recent executions, and the DAG of the selected one with live
// status colours (the layered layout comes from the server).
import { getJSON, post } from "./api.js";
import { clear, el, fill, seconds, statusBadge, svg, when } from "./dom.js";

// The designer links a finished run here as /?execution=ID#executions.
let selected = new URLSearchParams(location.search).get("execution");

export function init() {
  document.getElementById("run-button").addEventListener("click", async () => {
    const select = document.getElementById("run-select");
    const out = document.getElementById("run-result");
    if (!select.value) return;
    try {
      const { execution_id } = await post(`/api/registered/${encodeURIComponent(select.value)}/run`);
      out.textContent = `started ${execution_id}`;
      selected = execution_id;
      await load();
    } catch (error) { out.textContent = error.message; }
  });
}

export async function loadRegistered() {
  const select = clear(document.getElementById("run-select"));
  try {
    const { tasks } = await getJSON("/api/registered");
    for (const t of tasks) select.append(el("option", { value: t.task_id, text: t.name }));
  } catch { select.append(el("option", { value: "", text: "(no task manager)" })); }
}

export async function load() {
  let data;
  try { data = await getJSON("/api/executions"); } catch { return; }
  const body = clear(document.querySelector("#executions-table tbody"));
  for (const e of data.executions) {
    body.append(el("tr", { "data-execution": e.execution_id, onclick: () => { selected = e.execution_id; showDag(); } },
      el("td", { text: e.execution_id }), el("td", {}, statusBadge(e.status)), el("td", { text: e.trigger }),
      el("td", { text: e.task_count }), el("td", { text: when(e.started_at) }), el("td", { text: seconds(e.duration) })));
  }
  if (!selected && data.executions.length) selected = data.executions[0].execution_id;
  await showDag();
}

export async function showDag() {
  if (!selected) return;
  const box = document.getElementById("execution-detail");
  let d;
  try { d = await getJSON(`/api/executions/${encodeURIComponent(selected)}`); }
  catch (error) { fill(box, el("p", { class: "error", text: error.message })); return; }
  const W = 150, H = 34, GX = 60, GY = 18;
  const layers = Math.max(1, ...d.nodes.map((n) => n.layer + 1));
  const rows = Math.max(1, ...d.nodes.map((n) => n.row + 1));
  const graph = svg("svg", { class: "dag", id: "dag", width: layers * (W + GX), height: rows * (H + GY) });
  const pos = new Map(d.nodes.map((n) => [n.task_id, { x: n.layer * (W + GX) + 4, y: n.row * (H + GY) + 4 }]));
  for (const [from, to] of d.edges) {
    const a = pos.get(from), b = pos.get(to);
    graph.append(svg("line", { x1: a.x + W, y1: a.y + H / 2, x2: b.x, y2: b.y + H / 2 }));
  }
  for (const n of d.nodes) {
    const p = pos.get(n.task_id);
    const group = svg("g", { "data-node": n.task_id, "data-status": n.status });
    group.append(svg("rect", { x: p.x, y: p.y, width: W, height: H, class: `node-${n.status}` }));
    group.append(svg("text", { x: p.x + 6, y: p.y + 14 }, n.name.length > 22 ? n.name.slice(0, 21) + "…" : n.name));
    group.append(svg("text", { x: p.x + 6, y: p.y + 28 }, n.status));
    group.append(svg("title", {}, `${n.name} — ${n.status}${n.error_type ? ` — ${n.error_type}: ${n.message}` : ""}`));
    graph.append(group);
  }
  const running = d.status === "running";
  fill(box, 
    el("h3", {}, el("span", { text: d.execution_id }), " ", statusBadge(d.status)),
    el("p", { text: `targets: ${d.targets.join(", ")} · started ${when(d.started_at)}` }),
    running ? el("button", { type: "button", "data-action": "cancel-execution", text: "Cancel execution",
      onclick: async () => { await post(`/api/executions/${encodeURIComponent(d.execution_id)}/cancel`); await showDag(); } }) : null,
    graph,
  );
}
