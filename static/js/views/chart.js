// The throughput-over-time chart, drawn on a <canvas>: records per second between two progress
// updates (from the change in records read over the change in the run's duration), plotted
// against the run's duration. Its aria-label says the latest and the peak value.

import {byId} from '../dom.js';
import {count, duration, isNumber} from '../format.js';

const MAX_POINTS = 600;
const COLORS = {axis: '#4a4a4a', grid: '#d9dde3', line: '#0b57b0', fill: 'rgba(11, 87, 176, 0.12)', text: '#1f1f1f'};

/** A round top for the y axis (1, 2 or 5 × 10^n, at least 4), so its four steps read well. */
function niceCeiling(value) {
  if (!(value > 4)) return 4;
  const power = 10 ** Math.floor(Math.log10(value));
  const f = value / power;
  return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * power;
}

export function createChart() {
  const canvas = byId('throughput-chart');
  let points = []; // {t: seconds since the start, v: records/s}
  let last = null; // the previous sample {t, read}
  let frame = 0;

  function describe() {
    if (!points.length) {
      canvas.setAttribute('aria-label', 'Throughput over time, records per second: no data yet');
      return;
    }
    const latest = points[points.length - 1].v;
    const peak = Math.max(...points.map((p) => p.v));
    canvas.setAttribute('aria-label', `Throughput over time, records per second: latest ${count(latest)}, `
      + `peak ${count(peak)}, over ${duration(points[points.length - 1].t)}`);
  }

  function draw() {
    frame = 0;
    const ctx = canvas.getContext('2d');
    if (!ctx) return;
    const ratio = window.devicePixelRatio || 1;
    const cssWidth = Math.max(200, canvas.clientWidth || 600);
    const cssHeight = Math.max(120, canvas.clientHeight || 200);
    if (canvas.width !== Math.round(cssWidth * ratio) || canvas.height !== Math.round(cssHeight * ratio)) {
      canvas.width = Math.round(cssWidth * ratio);
      canvas.height = Math.round(cssHeight * ratio);
    }
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, cssWidth, cssHeight);
    ctx.font = '12px system-ui, sans-serif';
    const left = 70;
    const right = 10;
    const top = 10;
    const bottom = 26;
    const width = cssWidth - left - right;
    const height = cssHeight - top - bottom;
    const maxV = niceCeiling(points.length ? Math.max(...points.map((p) => p.v)) * 1.05 : 0);
    const maxT = points.length ? Math.max(1, points[points.length - 1].t) : 1;
    const minT = points.length ? points[0].t : 0;
    const spanT = Math.max(0.001, maxT - minT);
    const x = (t) => left + (points.length > 1 ? ((t - minT) / spanT) * width : width / 2);
    const y = (v) => top + height - (v / maxV) * height;

    ctx.strokeStyle = COLORS.grid;
    ctx.fillStyle = COLORS.text;
    ctx.lineWidth = 1;
    ctx.textAlign = 'right';
    ctx.textBaseline = 'middle';
    for (let i = 0; i <= 4; i += 1) {
      const v = (maxV * i) / 4;
      ctx.beginPath();
      ctx.moveTo(left, y(v));
      ctx.lineTo(left + width, y(v));
      ctx.stroke();
      if (points.length) ctx.fillText(count(v), left - 6, y(v));
    }
    ctx.strokeStyle = COLORS.axis;
    ctx.beginPath();
    ctx.moveTo(left, top);
    ctx.lineTo(left, top + height);
    ctx.lineTo(left + width, top + height);
    ctx.stroke();
    ctx.textBaseline = 'top';
    if (!points.length) {
      ctx.textAlign = 'center';
      ctx.fillText('No data yet: the chart fills while a migration runs.', left + width / 2, top + height / 2 - 6);
      return;
    }
    ctx.textAlign = 'left';
    ctx.fillText(duration(minT), left, top + height + 6);
    ctx.textAlign = 'right';
    ctx.fillText(`${duration(maxT)} — records/s`, left + width, top + height + 6);

    ctx.beginPath();
    points.forEach((p, i) => (i ? ctx.lineTo(x(p.t), y(p.v)) : ctx.moveTo(x(p.t), y(p.v))));
    if (points.length > 1) {
      ctx.lineTo(x(points[points.length - 1].t), y(0));
      ctx.lineTo(x(points[0].t), y(0));
      ctx.closePath();
      ctx.fillStyle = COLORS.fill;
      ctx.fill();
      ctx.beginPath();
      points.forEach((p, i) => (i ? ctx.lineTo(x(p.t), y(p.v)) : ctx.moveTo(x(p.t), y(p.v))));
      ctx.strokeStyle = COLORS.line;
      ctx.lineWidth = 2;
      ctx.stroke();
    }
    ctx.fillStyle = COLORS.line;
    const end = points[points.length - 1];
    ctx.beginPath();
    ctx.arc(x(end.t), y(end.v), 3, 0, 2 * Math.PI);
    ctx.fill();
  }

  function schedule() {
    if (!frame) frame = window.requestAnimationFrame(draw);
  }

  if (typeof ResizeObserver === 'function') new ResizeObserver(schedule).observe(canvas);
  else window.addEventListener('resize', schedule);
  schedule();

  return {
    /** Take a summary: adds a point when the run's duration moved on. */
    sample(summary) {
      if (!summary || !isNumber(summary.durationSeconds)) return;
      const t = summary.durationSeconds;
      const read = (isNumber(summary.migratedCount) ? summary.migratedCount : 0)
        + (isNumber(summary.failedCount) ? summary.failedCount : 0);
      if (last && t < last.t) this.reset(); // a new run (resumed): start again
      if (!last) {
        if (isNumber(summary.throughput) && t > 0) points.push({t, v: summary.throughput});
      } else if (t - last.t >= 0.05) {
        points.push({t, v: Math.max(0, (read - last.read) / (t - last.t))});
      } else {
        return;
      }
      last = {t, read};
      if (points.length > MAX_POINTS) points = points.slice(points.length - MAX_POINTS);
      describe();
      schedule();
    },
    reset() {
      points = [];
      last = null;
      describe();
      schedule();
    },
  };
}
