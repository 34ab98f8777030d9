// "3. Execute and monitor": the overall progress bar, the metrics and one progress bar per table,
// all from a summary (GET …/summary, or the WebSocket's snapshot / progress / report events).

import {byId, clear, el, progressBar, setProgress, clampPercent} from '../dom.js';
import {count, duration, percentOf, rate, isNumber} from '../format.js';

const RUNNING = ['executing', 'pausing'];

export function createMonitorView() {
  const overall = byId('overall-progress');
  const overallPercent = byId('overall-percent');
  const list = byId('tables-progress');
  const empty = byId('tables-progress-empty');
  const metric = (name) => document.querySelector(`[data-metric="${name}"]`);
  const metrics = Object.fromEntries(['total', 'migrated', 'failed', 'duration', 'throughput', 'eta'].map((m) => [m, metric(m)]));
  const rows = new Map(); // table name → its <li> parts
  const syncLine = byId('sync-status');

  // An incremental migration's sync: its pass, and how far the target is behind the source.
  function renderSync(sync) {
    if (!sync || typeof sync !== 'object') {
      syncLine.hidden = true;
      return;
    }
    const lagRows = isNumber(sync.lagRows) ? sync.lagRows : null;
    const behind = lagRows === null ? 'lag not measured yet'
      : lagRows === 0 ? 'in step with the source (lag 0)'
        : `behind by ${count(lagRows)} row${lagRows === 1 ? '' : 's'}, ${duration(sync.lagSeconds)}`;
    const every = isNumber(sync.every) ? ` · a pass every ${duration(sync.every)}` : '';
    const cut = sync.cutOver ? ' · cut over' : '';
    syncLine.textContent = `Sync pass ${sync.pass}: ${behind}${every}${cut}`;
    syncLine.dataset.lagRows = lagRows === null ? '' : String(lagRows);
    syncLine.dataset.lagSeconds = isNumber(sync.lagSeconds) ? String(sync.lagSeconds) : '';
    syncLine.dataset.pass = String(sync.pass);
    syncLine.hidden = false;
  }

  function setMetric(name, shown, value, title) {
    const node = metrics[name];
    if (!node) return;
    node.textContent = shown;
    node.dataset.value = value === null || value === undefined ? '' : String(value);
    if (title) node.title = title;
    else node.removeAttribute('title');
  }

  function tableRow(name) {
    let row = rows.get(name);
    if (row) return row;
    const title = el('span', {class: 'table-name'});
    const state = el('span', {class: 'status-badge'});
    const counts = el('span', {class: 'table-counts muted'});
    const bar = progressBar(`Progress of ${name}`);
    const percent = el('span', {class: 'bar-percent', text: '0%'});
    const li = el('li', {attrs: {'data-table': name}},
      el('div', {class: 'table-head'}, title, state, counts),
      el('div', {class: 'bar-line'}, bar, percent));
    row = {li, title, state, counts, bar, percent};
    rows.set(name, row);
    list.append(li);
    return row;
  }

  function renderTables(tables) {
    const seen = new Set();
    for (const t of tables) {
      if (!t || t.name === undefined || t.name === null) continue;
      const name = String(t.name);
      seen.add(name);
      const row = tableRow(name);
      row.title.textContent = t.target && t.target !== name ? `${name} → ${t.target}` : name;
      row.state.textContent = t.status || '';
      row.state.dataset.status = t.status || '';
      const total = isNumber(t.totalRecords) ? t.totalRecords : 0;
      const migrated = isNumber(t.migratedCount) ? t.migratedCount : 0;
      const failed = isNumber(t.failedCount) ? t.failedCount : 0;
      row.counts.textContent = `${count(migrated)} of ${count(total)} migrated, ${count(failed)} failed`;
      const value = clampPercent(t.progress);
      setProgress(row.bar, value, `${value}% (${count(migrated + failed)} of ${count(total)} records read)`);
      row.percent.textContent = `${value}%`;
    }
    for (const [name, row] of rows) {
      if (!seen.has(name)) {
        row.li.remove();
        rows.delete(name);
      }
    }
    empty.hidden = rows.size > 0;
  }

  return {
    /** Show a summary (full, or the progress event's fields merged into the last one). */
    render(summary) {
      if (!summary) return;
      const total = isNumber(summary.totalRecords) ? summary.totalRecords : 0;
      const migrated = isNumber(summary.migratedCount) ? summary.migratedCount : 0;
      const failed = isNumber(summary.failedCount) ? summary.failedCount : 0;
      const value = clampPercent(summary.progress);
      setProgress(overall, value, `${value}% (${count(migrated + failed)} of ${count(total)} records read)`);
      overallPercent.textContent = `${value}%`;
      setMetric('total', count(total), total);
      setMetric('migrated', count(migrated), migrated, `${percentOf(migrated, total)} of the total`);
      setMetric('failed', `${count(failed)} (${percentOf(failed, total)})`, failed,
        `${percentOf(failed, total)} of the total records; rejected ${count(summary.rejectedCount)}, skipped ${count(summary.skippedCount)}`);
      setMetric('duration', duration(summary.durationSeconds), summary.durationSeconds,
        summary.duration ? String(summary.duration) : '');
      setMetric('throughput', rate(summary.throughput), summary.throughput, 'average records per second since the start');
      let eta = '—';
      if (isNumber(summary.etaSeconds)) eta = duration(summary.etaSeconds);
      else if (RUNNING.includes(summary.status)) eta = 'calculating…';
      else if (summary.status === 'paused') eta = 'paused';
      else if (summary.status === 'completed') eta = 'done';
      setMetric('eta', eta, isNumber(summary.etaSeconds) ? summary.etaSeconds : '');
      if (Array.isArray(summary.tables)) renderTables(summary.tables);
      renderSync(summary.sync);
    },
    reset() {
      setProgress(overall, 0, '0%');
      overallPercent.textContent = '0%';
      for (const name of Object.keys(metrics)) setMetric(name, '—', '');
      clear(list);
      rows.clear();
      empty.hidden = false;
      renderSync(null);
    },
  };
}
