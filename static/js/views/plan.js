// "2. Plan": the source's tables (POST plan {} lists them all with their counts), the options,
// Create Plan, and the review of the plan the service made.

import {post, messageOf, migrationPath} from '../api.js';
import {append, byId, clear, el, say} from '../dom.js';
import {count, duration, text, isNumber} from '../format.js';

const PLANNABLE = ['initialized', 'planned'];

export function createPlanView({currentId, onPlanned}) {
  const form = byId('plan-form');
  const choices = byId('table-choices');
  const empty = byId('tables-empty');
  const discoverButton = byId('discover');
  const createButton = byId('create-plan');
  const message = byId('plan-message');
  const inputs = {
    batchSize: byId('batch-size'),
    parallelBatches: byId('parallel-batches'),
    mode: byId('mode'),
    validation: byId('validation'),
    retryFailed: byId('retry-failed'),
  };
  const review = {
    box: byId('plan-review'),
    total: byId('plan-total'),
    estimate: byId('plan-estimate'),
    order: byId('plan-order'),
    notes: byId('plan-order-notes'),
    tables: byId('plan-tables').querySelector('tbody'),
    transformations: byId('plan-transformations'),
    rules: byId('plan-rules'),
  };
  let status = null;
  let busy = false;
  let discovering = false;

  function refreshButtons() {
    const can = Boolean(currentId()) && PLANNABLE.includes(status) && !busy;
    discoverButton.disabled = !can;
    createButton.disabled = !can || !choices.querySelector('input[type=checkbox]');
  }

  /** The checkboxes: one per table, labelled with its name, with its record count beside it. */
  function showTables(tables, checkedNames) {
    const before = new Map([...choices.querySelectorAll('input[type=checkbox]')].map((b) => [b.value, b.checked]));
    clear(choices);
    for (const table of tables) {
      const name = String(table.name);
      const checked = checkedNames ? checkedNames.includes(name) : (before.has(name) ? before.get(name) : true);
      const box = el('input', {attrs: {type: 'checkbox', name: 'tables', value: name}});
      box.checked = checked;
      const records = `${count(table.totalRecords)} records${table.countIsEstimate ? ' (estimated)' : ''}`;
      choices.append(el('li', {},
        el('label', {class: 'choice'}, box, ` ${name}`),
        el('span', {class: 'muted count', text: records})));
    }
    empty.hidden = tables.length > 0;
    if (!tables.length) empty.textContent = 'The source has no tables.';
    refreshButtons();
  }

  async function discover() {
    const id = currentId();
    if (!id) return;
    busy = true;
    discovering = true;
    refreshButtons();
    say(message, 'Discovering the source\'s tables…', 'info');
    try {
      const answer = await post(migrationPath(id, 'plan'), {});
      const tables = answer.plan && Array.isArray(answer.plan.tables) ? answer.plan.tables : [];
      showTables(tables);
      say(message, `${tables.length} table(s) found. Choose the tables and options, then Create Plan.`, 'ok');
    } catch (exc) {
      say(message, messageOf(exc), 'error');
    } finally {
      busy = false;
      // a `plan` event of the discovery may still be on its way: ignore plans for a moment more
      setTimeout(() => { discovering = false; }, 300);
      refreshButtons();
    }
  }

  function wholeNumber(input, name) {
    const value = Number(input.value);
    if (!Number.isInteger(value) || value < Number(input.min || 1) || value > Number(input.max || 1e9)) {
      throw new Error(`${name} must be a whole number from ${input.min} to ${input.max}`);
    }
    return value;
  }

  async function createPlan() {
    const id = currentId();
    if (!id) return;
    const tables = [...choices.querySelectorAll('input[type=checkbox]')].filter((b) => b.checked).map((b) => b.value);
    if (!tables.length) {
      say(message, 'Choose at least one table.', 'error');
      return;
    }
    let body;
    try {
      body = {
        tables,
        batchSize: wholeNumber(inputs.batchSize, 'Batch size'),
        parallelBatches: wholeNumber(inputs.parallelBatches, 'Parallel batches'),
        validation: inputs.validation.checked,
        retryFailed: inputs.retryFailed.checked,
        mode: inputs.mode.value,
      };
    } catch (exc) {
      say(message, exc.message, 'error');
      return;
    }
    busy = true;
    refreshButtons();
    say(message, 'Planning (counting rows, probing the speed)…', 'info');
    try {
      const answer = await post(migrationPath(id, 'plan'), body);
      showReview(answer.plan);
      say(message, `Plan created: ${tables.length} table(s), ${count(answer.plan && answer.plan.totalRecords)} records.`, 'ok');
      onPlanned(answer.plan);
    } catch (exc) {
      say(message, messageOf(exc), 'error');
    } finally {
      busy = false;
      refreshButtons();
    }
  }

  function showReview(plan) {
    if (!plan || typeof plan !== 'object') {
      review.box.hidden = true;
      return;
    }
    const tables = Array.isArray(plan.tables) ? plan.tables : [];
    review.total.textContent = count(plan.totalRecords);
    const est = plan.estimate && typeof plan.estimate === 'object' ? plan.estimate : null;
    clear(review.estimate);
    if (isNumber(plan.estimatedSeconds)) {
      append(review.estimate, `${plan.estimatedSeconds} s`,
        plan.estimatedSeconds >= 60 ? ` (${duration(plan.estimatedSeconds)})` : '',
        est && est.rows ? el('span', {class: 'muted block small',
          text: `probe: ${count(est.rows)} rows of ${est.table} at ${count(est.rowsPerSecond)} records/s`}) : null);
    } else {
      review.estimate.textContent = 'no estimate';
    }
    const order = Array.isArray(plan.order) ? plan.order : tables.map((t) => t.name);
    review.order.textContent = order.length ? order.join(' → ') : '—';
    clear(review.notes);
    for (const note of Array.isArray(plan.orderNotes) ? plan.orderNotes : []) {
      review.notes.append(el('li', {text: text(note)}));
    }
    clear(review.tables);
    for (const t of tables) {
      const columns = Array.isArray(t.targetColumns)
        ? t.targetColumns.map((c) => `${c.name} ${c.type || ''}`.trim()).join(', ') : '—';
      const creates = t.create || (t.targetExists ? 'nothing: the table exists (rows are added)' : '—');
      const extra = [];
      if (Array.isArray(t.dependsOn) && t.dependsOn.length) extra.push(`after ${t.dependsOn.join(', ')}`);
      for (const note of Array.isArray(t.notes) ? t.notes : []) extra.push(text(note));
      review.tables.append(el('tr', {},
        el('th', {attrs: {scope: 'row'}, text: t.name}),
        el('td', {text: t.target || t.name}),
        el('td', {class: 'num', text: `${count(t.totalRecords)}${t.countIsEstimate ? ' (est.)' : ''}`}),
        el('td', {class: 'columns', text: columns}),
        el('td', {}, el('span', {text: creates}), extra.length ? el('span', {class: 'muted block', text: extra.join('; ')}) : null)));
    }
    showPerTable(review.transformations, plan.transformations, (steps) =>
      (Array.isArray(steps) ? steps : [steps]).map((s) => text(s)));
    showPerTable(review.rules, plan.validationRules, (columns) =>
      (columns && typeof columns === 'object' ? Object.entries(columns) : []).map(([col, rule]) => `${col}: ${text(rule)}`));
    review.box.hidden = false;
    if (!choices.querySelector('input[type=checkbox]')) {
      showTables(tables, tables.map((t) => String(t.name)));
    }
  }

  function showPerTable(container, perTable, linesOf) {
    clear(container);
    const entries = perTable && typeof perTable === 'object' ? Object.entries(perTable) : [];
    if (!entries.length) {
      container.append(el('p', {class: 'muted', text: 'None.'}));
      return;
    }
    const list = el('dl', {class: 'per-table'});
    for (const [table, value] of entries) {
      list.append(el('dt', {text: table}), el('dd', {}, el('ul', {}, ...linesOf(value).map((line) => el('li', {class: 'mono', text: line})))));
    }
    container.append(list);
  }

  form.addEventListener('submit', (event) => {
    event.preventDefault();
    createPlan();
  });
  discoverButton.addEventListener('click', () => discover());
  choices.addEventListener('change', refreshButtons);
  refreshButtons();

  return {
    discover,
    showReview,
    showTables,
    get discovering() {
      return discovering;
    },
    setStatus(value) {
      status = value;
      if (!choices.querySelector('input[type=checkbox]')) {
        empty.textContent = value === 'initialized'
          ? 'Discover tables lists the source\'s tables.'
          : 'Initialize first: the source\'s tables are listed here.';
      }
      refreshButtons();
    },
    reset() {
      clear(choices);
      empty.hidden = false;
      empty.textContent = 'Initialize first: the source\'s tables are listed here.';
      review.box.hidden = true;
      say(message, '');
      refreshButtons();
    },
  };
}
