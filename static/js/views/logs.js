// Live logs: filled from GET …/log (all pages, oldest first), then from the WebSocket's `log`
// events; filtered by level (that level and above, as the API does), table and a search text.
// ERROR entries are highlighted and show their recordId and value.

import {get, messageOf, migrationPath} from '../api.js';
import {byId, clear, el} from '../dom.js';
import {clock, count, text} from '../format.js';

const LEVELS = {DEBUG: 10, INFO: 20, WARNING: 30, ERROR: 40};
const MAX_ENTRIES = 5000;
const PAGE = 1000;
const MAX_PAGES = 50;

function keyOf(entry) {
  return [entry.timestamp, entry.level, entry.table, entry.batch, entry.recordId, entry.message].map(text).join('|');
}

export function createLogsView() {
  const list = byId('log-list');
  const box = byId('log-box');
  const level = byId('log-level');
  const table = byId('log-table');
  const search = byId('log-search');
  const autoScroll = byId('log-autoscroll');
  const counter = byId('log-count');
  let entries = [];
  let keys = new Set();
  let tables = new Set();
  let loadToken = 0;

  function matches(entry) {
    const min = LEVELS[level.value] || 0;
    if (min && (LEVELS[String(entry.level).toUpperCase()] || 0) < min) return false;
    if (table.value && entry.table !== table.value) return false;
    const needle = search.value.trim().toLowerCase();
    if (needle) {
      const hay = [entry.message, entry.table, entry.level, entry.recordId, entry.value, entry.error]
        .map(text).join(' ').toLowerCase();
      if (!hay.includes(needle)) return false;
    }
    return true;
  }

  function item(entry) {
    const levelName = String(entry.level || 'INFO').toUpperCase();
    const isError = levelName === 'ERROR';
    const li = el('li', {class: `log-entry log-${levelName.toLowerCase()}`, attrs: {'data-level': levelName}},
      el('time', {class: 'log-time', attrs: {datetime: entry.timestamp || null}, text: clock(entry.timestamp)}),
      el('span', {class: 'log-level', text: levelName}),
      entry.table ? el('span', {class: 'log-table', text: entry.table}) : null,
      el('span', {class: 'log-message', text: text(entry.message)}));
    const details = [];
    if (entry.recordId !== undefined && entry.recordId !== null) {
      details.push(el('span', {class: 'log-record', text: `recordId: ${text(entry.recordId)}`}));
    }
    if (entry.value !== undefined && entry.value !== null) {
      const value = String(entry.value);
      details.push(el('span', {class: 'log-value', text: `value: ${value === '' ? '(empty)' : value}`}));
    }
    if (entry.error && entry.error !== entry.message) details.push(el('span', {class: 'log-error-text', text: text(entry.error)}));
    if (entry.batch !== undefined && entry.batch !== null && isError) details.push(el('span', {text: `batch ${entry.batch}`}));
    if (details.length) li.append(el('div', {class: 'log-details'}, ...details));
    return li;
  }

  function updateCount() {
    const shown = list.childElementCount;
    counter.textContent = entries.length
      ? `Showing ${count(shown)} of ${count(entries.length)} entries.`
      : 'No log entries yet.';
  }

  function scrollDown() {
    if (autoScroll.checked) box.scrollTop = box.scrollHeight;
  }

  function renderAll() {
    clear(list);
    const fragment = document.createDocumentFragment();
    for (const entry of entries) if (matches(entry)) fragment.append(item(entry));
    list.append(fragment);
    updateCount();
    scrollDown();
  }

  function noteTable(name) {
    if (!name || tables.has(name)) return;
    tables.add(name);
    const chosen = table.value;
    const names = [...tables].sort();
    while (table.options.length > 1) table.remove(1);
    for (const n of names) table.append(el('option', {attrs: {value: n}, text: n}));
    table.value = names.includes(chosen) ? chosen : '';
  }

  function remember(entry) {
    if (!entry || typeof entry !== 'object') return false;
    const key = keyOf(entry);
    if (keys.has(key)) return false;
    keys.add(key);
    entries.push(entry);
    noteTable(entry.table);
    return true;
  }

  function trim() {
    if (entries.length <= MAX_ENTRIES) return false;
    const dropped = entries.slice(0, entries.length - MAX_ENTRIES);
    entries = entries.slice(entries.length - MAX_ENTRIES);
    for (const e of dropped) keys.delete(keyOf(e));
    return true;
  }

  for (const control of [level, table]) control.addEventListener('change', renderAll);
  search.addEventListener('input', renderAll);
  autoScroll.addEventListener('change', scrollDown);
  updateCount();

  return {
    /** One entry from the WebSocket. */
    add(entry) {
      if (!remember(entry)) return;
      if (trim()) {
        renderAll();
        return;
      }
      if (matches(entry)) {
        list.append(item(entry));
        scrollDown();
      }
      updateCount();
    },
    /** Fetch the migration's whole log and merge it in (entries already shown are kept once). */
    async load(id) {
      if (!id) return;
      const mine = ++loadToken;
      let after = null;
      let added = 0;
      try {
        for (let page = 0; page < MAX_PAGES; page += 1) {
          const query = `?limit=${PAGE}${after !== null ? `&after=${after}` : ''}`;
          const batch = await get(migrationPath(id, 'log') + query);
          if (mine !== loadToken) return; // reset or reloaded meanwhile
          if (!Array.isArray(batch)) break;
          for (const entry of batch) if (remember(entry)) added += 1;
          const ids = batch.map((e) => e && e.id).filter((n) => typeof n === 'number');
          if (batch.length < PAGE || !ids.length) break;
          after = Math.max(...ids);
        }
      } catch (exc) {
        counter.textContent = `The log could not be loaded: ${messageOf(exc)}`;
        return;
      }
      if (added) {
        entries.sort((a, b) => (String(a.timestamp) < String(b.timestamp) ? -1
          : String(a.timestamp) > String(b.timestamp) ? 1 : (a.id || 0) - (b.id || 0)));
        trim();
        renderAll();
      } else {
        updateCount();
      }
    },
    /** Table names for the Table filter (from the summary), besides those seen in entries. */
    setTables(names) {
      for (const name of names) noteTable(String(name));
    },
    reset() {
      loadToken += 1;
      entries = [];
      keys = new Set();
      tables = new Set();
      while (table.options.length > 1) table.remove(1);
      table.value = '';
      renderAll();
    },
  };
}
