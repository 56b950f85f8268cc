// Small line charts on a canvas: series = [{label, colour, values: [[t, v], ...], dashed}].
export function lineChart(canvas, series, { min = 0, max = null, unit = "" } = {}) {
  const ctx = canvas.getContext("2d");
  const W = canvas.width, H = canvas.height, pad = { l: 44, r: 8, t: 14, b: 18 };
  ctx.clearRect(0, 0, W, H);
  const points = series.flatMap((s) => s.values);
  if (!points.length) {
    ctx.fillStyle = "#9ca3af";
    ctx.fillText("no data yet", W / 2 - 30, H / 2);
    return;
  }
  const t0 = Math.min(...points.map((p) => p[0])), t1 = Math.max(...points.map((p) => p[0]));
  let top = max ?? Math.max(...points.map((p) => p[1]), 1e-9);
  if (top <= min) top = min + 1;
  const x = (t) => pad.l + ((t - t0) / Math.max(t1 - t0, 1e-9)) * (W - pad.l - pad.r);
  const y = (v) => H - pad.b - ((v - min) / (top - min)) * (H - pad.t - pad.b);
  ctx.strokeStyle = "#e5e7eb";
  ctx.fillStyle = "#6b7280";
  ctx.font = "10px system-ui";
  for (let i = 0; i <= 4; i++) {
    const v = min + ((top - min) * i) / 4;
    ctx.beginPath(); ctx.moveTo(pad.l, y(v)); ctx.lineTo(W - pad.r, y(v)); ctx.stroke();
    ctx.fillText(format(v) + unit, 2, y(v) + 3);
  }
  let legendX = pad.l;
  for (const s of series) {
    ctx.strokeStyle = s.colour;
    ctx.setLineDash(s.dashed ? [4, 3] : []);
    ctx.beginPath();
    s.values.forEach(([t, v], i) => (i ? ctx.lineTo(x(t), y(v)) : ctx.moveTo(x(t), y(v))));
    ctx.stroke();
    ctx.setLineDash([]);
    ctx.fillStyle = s.colour;
    ctx.fillText(s.label, legendX, 10);
    legendX += ctx.measureText(s.label).width + 12;
  }
}

function format(v) {
  if (v === 0) return "0";
  if (Math.abs(v) >= 100) return v.toFixed(0);
  if (Math.abs(v) >= 1) return v.toFixed(1);
  return v.toPrecision(2);
}
