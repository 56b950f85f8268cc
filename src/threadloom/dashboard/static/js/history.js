// History: task runs or executions from SQLite, filtered and paged by the database.
import { getJSON } from "./api.js";
import { clear, el, seconds, statusBadge, when } from "./dom.js";

const PAGE = 50;
let offset = 0;

export function init() {
  const reset = () => { offset = 0; load(); };
  for (const id of ["history-kind", "history-status", "history-task"]) {
    document.getElementById(id).addEventListener("change", reset);
  }
  document.getElementById("history-prev").addEventListener("click", () => { offset = Math.max(0, offset - PAGE); load(); });
  document.getElementById("history-next").addEventListener("click", () => { offset += PAGE; load(); });
}

export async function load() {
  const kind = document.getElementById("history-kind").value;
  const query = new URLSearchParams({ limit: String(PAGE), offset: String(offset) });
  const status = document.getElementById("history-status").value.trim();
  const task = document.getElementById("history-task").value.trim();
  if (status) query.set("status", status);
  if (task && kind === "runs") query.set("task_id", task);
  const error = clear(document.getElementById("history-error"));
  let data;
  try { data = await getJSON(`/api/history/${kind}?${query}`); }
  catch (e) { error.textContent = e.message; return; }
  const head = clear(document.querySelector("#history-table thead"));
  const body = clear(document.querySelector("#history-table tbody"));
  if (kind === "runs") {
    head.append(el("tr", {}, ["finished", "task", "execution", "status", "attempts", "duration", "error"].map((h) => el("th", { text: h }))));
    for (const r of data.runs) {
      body.append(el("tr", {}, el("td", { text: when(r.finished_at) }), el("td", { text: r.task_name }),
        el("td", { text: r.execution_id }), el("td", {}, statusBadge(r.status)), el("td", { text: r.attempts }),
        el("td", { text: seconds(r.duration) }), el("td", { text: r.error_type ? `${r.error_type}: ${r.error_message}` : "" })));
    }
  } else {
    head.append(el("tr", {}, ["started", "execution", "targets", "status", "trigger", "tasks", "duration", "error"].map((h) => el("th", { text: h }))));
    for (const e of data.executions) {
      body.append(el("tr", {}, el("td", { text: when(e.started_at) }), el("td", { text: e.execution_id }),
        el("td", { text: e.targets.join(", ") }), el("td", {}, statusBadge(e.status)), el("td", { text: e.trigger }),
        el("td", { text: e.task_count }), el("td", { text: seconds(e.duration) }), el("td", { text: e.error_message })));
    }
  }
  document.getElementById("history-page").textContent = `rows ${offset + 1}–${offset + (data.runs || data.executions).length}`;
  document.getElementById("history-prev").disabled = offset === 0;
  document.getElementById("history-next").disabled = !data.more;
}
