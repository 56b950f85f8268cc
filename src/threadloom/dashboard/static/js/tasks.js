// Tasks: a filterable, sortable table (filtered and sorted by the server);
// a row opens the task's detail: traceback and attempts.
import { getJSON, post } from "./api.js";
import { clear, el, fill, seconds, statusBadge, when } from "./dom.js";

let sort = "queued_at", order = "desc", selected = null;

export function init(refresh) {
  for (const th of document.querySelectorAll("#tasks-table th[data-sort]")) {
    th.addEventListener("click", () => {
      if (sort === th.dataset.sort) order = order === "asc" ? "desc" : "asc";
      else { sort = th.dataset.sort; order = "asc"; }
      refresh();
    });
  }
  document.getElementById("tasks-status").addEventListener("change", refresh);
  document.getElementById("tasks-name").addEventListener("input", refresh);
}

export async function load() {
  const status = document.getElementById("tasks-status").value;
  const name = document.getElementById("tasks-name").value;
  const query = new URLSearchParams({ sort, order, limit: "200" });
  if (status) query.set("status", status);
  if (name) query.set("name", name);
  const data = await getJSON(`/api/tasks?${query}`);
  for (const th of document.querySelectorAll("#tasks-table th[data-sort]")) {
    th.classList.toggle("sorted-asc", th.dataset.sort === sort && order === "asc");
    th.classList.toggle("sorted-desc", th.dataset.sort === sort && order === "desc");
  }
  document.getElementById("tasks-total").textContent = `${data.total} tasks`;
  const body = clear(document.querySelector("#tasks-table tbody"));
  for (const t of data.tasks) {
    const cancellable = ["queued", "running", "retrying"].includes(t.status);
    body.append(el("tr", { "data-task": t.task_id, onclick: () => showDetail(t.task_id) },
      el("td", { text: t.task_id }), el("td", { class: "task-name", text: t.name ?? "" }),
      el("td", {}, statusBadge(t.status)), el("td", { text: t.priority }),
      el("td", { text: t.attempts }), el("td", { text: seconds(t.wait_time) }),
      el("td", { text: seconds(t.run_time) }),
      el("td", { text: t.error_type ? `${t.error_type}: ${t.message}` : "" }),
      el("td", {}, cancellable ? el("button", { type: "button", "data-action": "cancel",
        onclick: (event) => { event.stopPropagation(); cancel(t.task_id); }, text: "Cancel" }) : null)));
  }
  if (selected) await showDetail(selected);
}

async function cancel(taskId) {
  try { await post(`/api/tasks/${encodeURIComponent(taskId)}/cancel`); }
  catch (error) { alertText(error.message); }
  await load();
}

function alertText(message) {
  const box = document.getElementById("task-detail");
  box.hidden = false;
  fill(box, el("p", { class: "error", text: message }));
}

async function showDetail(taskId) {
  selected = taskId;
  const box = document.getElementById("task-detail");
  let t;
  try { t = await getJSON(`/api/tasks/${encodeURIComponent(taskId)}`); }
  catch (error) { alertText(error.message); return; }
  box.hidden = false;
  fill(box, 
    el("h3", {}, el("span", { class: "task-name", text: t.name ?? t.task_id }), " ", statusBadge(t.status)),
    el("p", { text: `${t.task_id} · priority ${t.priority} · ${t.attempts} attempt(s) · queued ${when(t.queued_at)} · wait ${seconds(t.wait_time)} · run ${seconds(t.run_time)}` }),
    t.error_type ? el("p", { class: "error", text: `${t.error_type}: ${t.message}` }) : null,
    t.traceback ? el("pre", { class: "traceback", text: t.traceback }) : null,
    t.attempts_log && t.attempts_log.length ? el("table", { class: "grid attempts" },
      el("thead", {}, el("tr", {}, ["attempt", "worker", "started", "ended", "error"].map((h) => el("th", { text: h })))),
      el("tbody", {}, t.attempts_log.map((a) => el("tr", {},
        el("td", { text: a.attempt }), el("td", { text: a.worker }), el("td", { text: when(a.started_at) }),
        el("td", { text: when(a.ended_at) }), el("td", { text: a.error_type ? `${a.error_type}: ${a.message}` : "" })))),
    ) : null,
    ...((t.attempts_log || []).filter((a) => a.traceback).map((a) =>
      el("details", {}, el("summary", { text: `attempt ${a.attempt} traceback` }), el("pre", { class: "traceback", text: a.traceback })))),
  );
}
