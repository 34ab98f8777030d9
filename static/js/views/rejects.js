// Rejects: the failed rows (GET …/rejects) in a table, and Download CSV (?format=csv, sent with
// the token, saved through a Blob).

import {get, download, messageOf, migrationPath} from '../api.js';
import {byId, clear, el, say} from '../dom.js';
import {count, text} from '../format.js';

const LIMIT = 1000;

export function createRejectsView({currentId}) {
  const body = byId('rejects-table').querySelector('tbody');
  const message = byId('rejects-message');
  const refreshButton = byId('rejects-refresh');
  const downloadButton = byId('rejects-download');
  let loading = 0;

  function cell(value) {
    if (value === null || value === undefined) return el('td', {class: 'muted', text: 'NULL'});
    return el('td', {text: text(value)});
  }

  async function load() {
    const id = currentId();
    downloadButton.disabled = !id;
    refreshButton.disabled = !id;
    if (!id) {
      clear(body);
      say(message, 'No migration yet.');
      return;
    }
    const mine = ++loading;
    try {
      const answer = await get(`${migrationPath(id, 'rejects')}?limit=${LIMIT}`);
      if (mine !== loading || id !== currentId()) return;
      const rows = Array.isArray(answer.rejects) ? answer.rejects : [];
      clear(body);
      for (const r of rows) {
        body.append(el('tr', {},
          cell(r.table), el('td', {class: 'num', text: r.row === null || r.row === undefined ? '—' : text(r.row)}),
          cell(r.column), cell(r.value), cell(r.rule), cell(r.message)));
      }
      say(message, rows.length
        ? `${count(rows.length)} rejected row(s)${rows.length >= LIMIT ? ` (the first ${count(LIMIT)}; Download CSV has them all)` : ''}.`
        : 'No rejected rows.', 'info');
    } catch (exc) {
      if (mine === loading) say(message, messageOf(exc), 'error');
    }
  }

  refreshButton.addEventListener('click', () => load());
  downloadButton.addEventListener('click', async () => {
    const id = currentId();
    if (!id) return;
    downloadButton.disabled = true;
    try {
      const name = await download(`${migrationPath(id, 'rejects')}?format=csv`, `rejects-${id}.csv`);
      say(message, `Downloaded ${name}.`, 'ok');
    } catch (exc) {
      say(message, `Download failed: ${messageOf(exc)}`, 'error');
    } finally {
      downloadButton.disabled = !currentId();
    }
  });

  return {
    load,
    reset() {
      loading += 1;
      clear(body);
      say(message, '');
      downloadButton.disabled = !currentId();
      refreshButton.disabled = !currentId();
    },
  };
}
