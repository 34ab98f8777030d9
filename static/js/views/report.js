// A verification report ({ok, deep, checkedAt, seconds, tables: [...]}) as HTML: the verdict,
// then per table the counts, the checksums, the missing / extra / different keys and problems.

import {clear, el} from '../dom.js';
import {count, dateTime, text, isNumber} from '../format.js';

function keysCell(table, what) {
  const keys = Array.isArray(table[what]) ? table[what] : null;
  const total = isNumber(table[`${what}Count`]) ? table[`${what}Count`] : (keys ? keys.length : null);
  if (keys === null && total === null) return '—';
  if (!total) return '0';
  const shown = (keys || []).map(text).join(', ');
  const more = total - (keys ? keys.length : 0);
  return `${count(total)}: ${shown}${more > 0 ? ` and ${count(more)} more` : ''}`;
}

function yesNo(value) {
  if (value === true) return 'match';
  if (value === false) return 'MISMATCH';
  return '—';
}

/** Render `report` into `container` (its previous content is replaced). */
export function renderReport(container, report, {title} = {}) {
  clear(container);
  if (!report || typeof report !== 'object') {
    container.append(el('p', {class: 'muted', text: 'No verification report yet.'}));
    return;
  }
  if (title) container.append(el('h3', {text: title}));
  const ok = report.ok === true;
  container.append(el('p', {class: `verdict ${ok ? 'verdict-ok' : 'verdict-bad'}`, attrs: {'data-verdict': ok ? 'ok' : 'not-ok'}},
    el('strong', {text: ok ? 'OK' : 'NOT OK'}),
    ok ? ' — the target holds the source\'s rows minus the reported rejects.' : ' — see the problems below.'));
  const how = report.deep ? 'counts and row checksums' : 'counts';
  container.append(el('p', {class: 'muted',
    text: `Checked ${dateTime(report.checkedAt)} (${how}${isNumber(report.seconds) ? `, ${report.seconds} s` : ''}).`}));
  const tables = Array.isArray(report.tables) ? report.tables : [];
  if (!tables.length) {
    container.append(el('p', {class: 'muted', text: 'No tables were checked.'}));
    return;
  }
  const head = ['Table', 'Target', 'Source rows', 'Rejected', 'Expected', 'Target rows', 'Counts', 'Checksums',
    'Missing keys', 'Extra keys', 'Different keys', 'Problems'];
  const body = el('tbody');
  for (const t of tables) {
    const problems = Array.isArray(t.problems) ? t.problems : [];
    body.append(el('tr', {class: t.ok === false ? 'row-bad' : '', attrs: {'data-table': t.name}},
      el('th', {attrs: {scope: 'row'}, text: t.name}),
      el('td', {text: t.target || ''}),
      el('td', {class: 'num', text: count(t.sourceCount)}),
      el('td', {class: 'num', text: count(t.rejected)}),
      el('td', {class: 'num', text: count(t.expectedCount)}),
      el('td', {class: 'num', text: count(t.targetCount)}),
      el('td', {text: yesNo(t.match)}),
      el('td', {text: yesNo(t.checksumMatch)}),
      el('td', {text: keysCell(t, 'missing')}),
      el('td', {text: keysCell(t, 'extra')}),
      el('td', {text: keysCell(t, 'different')}),
      el('td', {}, problems.length ? el('ul', {class: 'problems'}, ...problems.map((p) => el('li', {text: text(p)}))) : 'none')));
  }
  container.append(el('div', {class: 'scroll-x'},
    el('table', {class: 'data-table report-table'},
      el('thead', {}, el('tr', {}, ...head.map((h) => el('th', {attrs: {scope: 'col'}, text: h})))),
      body)));
}
