// Schedules: next fire times, the cron expression in words, pause / resume, missed runs.
import { getJSON, post } from "./api.js";
import { clear, el } from "./dom.js";

export async function load() {
  let data;
  try { data = await getJSON("/api/schedules"); } catch { return; }
  const body = clear(document.querySelector("#schedules-table tbody"));
  if (!data.schedules.length) body.append(el("tr", {}, el("td", { colspan: 6, text: "no schedules" })));
  for (const s of data.schedules) {
    const action = s.paused ? "resume" : "pause";
    body.append(el("tr", { "data-job": s.job_id },
      el("td", { text: s.name }), el("td", { text: s.schedule }), el("td", { text: s.explain }),
      el("td", {}, el("ul", {}, s.next_fire_times.map((t) => el("li", { text: new Date(t).toLocaleString() })))),
      el("td", { text: s.paused ? "paused" : `running ${s.running}, queued ${s.queued}` }),
      el("td", {}, el("button", { type: "button", "data-action": action, text: action,
        onclick: async () => { await post(`/api/schedules/${encodeURIComponent(s.job_id)}/${action}`); await load(); } }))));
  }
  const missed = clear(document.querySelector("#missed-table tbody"));
  for (const m of data.missed) {
    missed.append(el("tr", {}, el("td", { text: m.job_id }), el("td", { text: m.fire_time }), el("td", { text: m.reason })));
  }
}
