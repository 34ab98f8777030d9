// History: previous migrations (GET /api/migrations, newest first); each has a button that opens
// its summary (GET /api/migrations/{id}/summary) and verification report (…/report; 404: none yet).

import {get, messageOf, migrationPath, ApiError} from '../api.js';
import {byId, clear, el, say} from '../dom.js';
import {count, dateTime, duration, percentOf, rate} from '../format.js';
import {renderReport} from './report.js';

export function createHistoryView() {
  const list = byId('history-list');
  const message = byId('history-message');
  const refreshButton = byId('history-refresh');
  const items = new Map(); // id → {li, status, details, button}
  let loading = 0;

  function summaryBlock(summary, recordStatus) {
    const facts = [
      // the record's status: after a rollback the summary may still say how the run ended
      ['Status', recordStatus || summary.status],
      ['Source', summary.source],
      ['Target', summary.target],
      ['Total records', count(summary.totalRecords)],
      ['Migrated', count(summary.migratedCount)],
      ['Failed', `${count(summary.failedCount)} (${percentOf(summary.failedCount, summary.totalRecords)})`],
      ['Duration', duration(summary.durationSeconds)],
      ['Throughput', rate(summary.throughput)],
      ['Started', dateTime(summary.startTime)],
      ['Ended', dateTime(summary.endTime)],
    ];
    if (summary.error) facts.push(['Error', summary.error]);
    const dl = el('dl', {class: 'facts'},
      ...facts.map(([k, v]) => el('div', {}, el('dt', {text: k}), el('dd', {text: v === null || v === undefined ? '—' : v}))));
    const tables = Array.isArray(summary.tables) ? summary.tables : [];
    const table = tables.length ? el('div', {class: 'scroll-x'}, el('table', {class: 'data-table'},
      el('thead', {}, el('tr', {}, ...['Source', 'Target', 'Status', 'Records', 'Migrated', 'Failed', 'Progress']
        .map((h) => el('th', {attrs: {scope: 'col'}, text: h})))),
      el('tbody', {}, ...tables.map((t) => el('tr', {},
        el('th', {attrs: {scope: 'row'}, text: t.name}), el('td', {text: t.target || ''}), el('td', {text: t.status || ''}),
        el('td', {class: 'num', text: count(t.totalRecords)}), el('td', {class: 'num', text: count(t.migratedCount)}),
        el('td', {class: 'num', text: count(t.failedCount)}), el('td', {class: 'num', text: `${t.progress ?? 0}%`})))))) : null;
    return el('div', {class: 'history-summary'}, el('h3', {text: 'Summary'}), dl, table);
  }

  async function open(id, item) {
    const details = item.details;
    clear(details);
    details.append(el('p', {class: 'muted', text: 'Loading…'}));
    const [summary, report] = await Promise.allSettled([
      get(migrationPath(id, 'summary')),
      get(migrationPath(id, 'report')),
    ]);
    clear(details);
    if (summary.status === 'fulfilled' && summary.value.summary) {
      details.append(summaryBlock(summary.value.summary, item.status.dataset.status));
    } else {
      details.append(el('p', {class: 'error-text', text: `Summary: ${messageOf(summary.reason)}`}));
    }
    const reportBox = el('div', {class: 'history-report'});
    details.append(reportBox);
    if (report.status === 'fulfilled') {
      renderReport(reportBox, report.value.report, {title: 'Verification report'});
    } else if (report.reason instanceof ApiError && report.reason.status === 404) {
      reportBox.append(el('h3', {text: 'Verification report'}),
        el('p', {class: 'muted', text: 'No verification report yet for this migration.'}));
    } else {
      reportBox.append(el('h3', {text: 'Verification report'}),
        el('p', {class: 'error-text', text: messageOf(report.reason)}));
    }
  }

  function makeItem(m) {
    const id = String(m.id);
    const detailsId = `history-details-${id.replace(/[^A-Za-z0-9_-]/g, '_')}`;
    const label = el('span', {class: 'button-label', text: 'Open'});
    const button = el('button', {class: 'small', attrs: {type: 'button', 'aria-expanded': 'false', 'aria-controls': detailsId}},
      label, el('span', {class: 'visually-hidden', text: ` migration ${id}`}));
    const status = el('span', {class: 'status-badge'});
    const route = el('span', {class: 'history-route'});
    const when = el('span', {class: 'muted'});
    const details = el('div', {class: 'history-details', attrs: {id: detailsId, hidden: true}});
    const li = el('li', {attrs: {'data-id': id}},
      el('div', {class: 'history-head'}, button, el('span', {class: 'mono', text: id}), status, route, when),
      details);
    const item = {li, status, route, when, details, button};
    button.addEventListener('click', async () => {
      const opening = button.getAttribute('aria-expanded') !== 'true';
      button.setAttribute('aria-expanded', String(opening));
      label.textContent = opening ? 'Close' : 'Open';
      details.hidden = !opening;
      if (opening) {
        try {
          await open(id, item);
        } catch (exc) {
          clear(details);
          details.append(el('p', {class: 'error-text', text: messageOf(exc)}));
        }
      }
    });
    return item;
  }

  function update(item, m) {
    item.status.textContent = m.status || '';
    item.status.dataset.status = m.status || '';
    item.route.textContent = `${m.source || '?'} → ${m.target || '?'}`;
    item.when.textContent = dateTime(m.createdTime);
  }

  async function refresh() {
    const mine = ++loading;
    try {
      const answer = await get('/api/migrations?limit=100');
      if (mine !== loading) return;
      const migrations = Array.isArray(answer.migrations) ? answer.migrations : [];
      const seen = new Set();
      migrations.forEach((m, index) => {
        const id = String(m.id);
        seen.add(id);
        let item = items.get(id);
        if (!item) {
          item = makeItem(m);
          items.set(id, item);
        }
        update(item, m);
        if (list.children[index] !== item.li) list.insertBefore(item.li, list.children[index] || null);
      });
      for (const [id, item] of items) {
        if (!seen.has(id)) {
          item.li.remove();
          items.delete(id);
        }
      }
      say(message, migrations.length ? '' : 'No migrations yet.');
    } catch (exc) {
      if (mine === loading) say(message, messageOf(exc), 'error');
    }
  }

  /** A live status for one listed migration (until the next refresh). */
  function setStatus(id, status) {
    const item = items.get(id);
    if (item && status) {
      item.status.textContent = status;
      item.status.dataset.status = status;
    }
  }

  refreshButton.addEventListener('click', () => refresh());
  return {refresh, setStatus};
}
