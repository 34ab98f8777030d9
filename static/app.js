// Migration monitor — the live dashboard of /admin/migrations. Vanilla ES modules, no build step;
// it uses only the public REST API (/api/migrations/…) and the WebSocket (/api/migrations/events).
//
// What the page guarantees (tests drive it through these):
//   Token       ?token= in the page URL is moved into sessionStorage ("migrator.apiToken") and
//               removed from the address bar. Without a token, or on a 401, the section #auth-panel
//               shows an input labelled "API token" and a button "Save token".
//   Connect     inputs labelled "Source DB" (#source-db) and "Target DB" (#target-db); button
//               "Initialize"; the answer in #init-result (role=status); each side in #source-status
//               / #target-status: "Source: connected", "Target: failed — …", "…: not tested".
//   Plan        after Initialize the tables are discovered (POST plan {}): one checkbox per table,
//               labelled with the table name, in #table-choices (button "Discover tables" again);
//               inputs labelled "Batch size", "Parallel batches", "Mode" (select insert|upsert|replace),
//               checkboxes "Validation", "Retry failed"; button "Create Plan"; the review in
//               #plan-review (#plan-total, #plan-estimate, #plan-order, #plan-order-notes,
//               table #plan-tables, #plan-transformations, #plan-rules).
//   Run         buttons "Execute Migration", "Pause", "Resume", "Cancel", "Rollback" (asks confirm()),
//               "Verify" (POST verify {"deep": true}); each enabled only in the statuses that allow it;
//               answers in #control-message.
//   Status      #status holds just the status word (executing, pausing, paused, completed, failed,
//               cancelled, interrupted, rolling_back, rolled_back, initialized, planned; "none");
//               #status-error the run's error; #migration-id the current migration's id;
//               #connection the WebSocket: "connecting…", "connected", "reconnecting…".
//   Progress    role=progressbar elements with aria-valuemin=0, aria-valuemax=100, aria-valuenow an
//               integer 0–100 (floored): aria-label "Overall progress" and one "Progress of <table>"
//               per table (in <li data-table="<table>"> of #tables-progress).
//   Metrics     [data-metric="total|migrated|failed|duration|throughput|eta"]: the text is for people
//               ("50,000", "3 (0.01%)", "12 s", "4,000 records/s"), data-value the raw number
//               (records, seconds, records/s; "" when unknown).
//   Chart       <canvas id="throughput-chart" role="img"> whose aria-label starts "Throughput over time".
//   Logs        <ol aria-label="Log entries"> (#log-list) of <li data-level="INFO|…">; select labelled
//               "Level" (that level and above), select labelled "Table", search box labelled "Search",
//               checkbox "Auto-scroll". ERROR entries have class log-error and show "recordId: …" and
//               "value: …".
//   Verify      region aria-label="Verification report": .verdict with data-verdict="ok|not-ok", and a
//               table per table: source/target counts, counts and checksums match, missing/extra/
//               different keys, problems.
//   Rejects     <table aria-label="Rejects"> (Table, Row, Column, Value, Rule, Message); buttons
//               "Refresh rejects" and "Download CSV".
//   History     <ul aria-label="History"> of <li data-id="<id>">, newest first, each with a button "Open"
//               (accessible name "Open migration <id>"; "Close migration <id>" once open; aria-expanded)
//               showing its summary and verification report ("No verification report yet" on 404);
//               button "Refresh history".
//   Following   the page shows the most recent migration and follows newer ones as their events arrive
//               (the WebSocket is opened without ?migration=, so it hears every migration).

import {ApiError, get, getToken, messageOf, migrationPath, onUnauthorized, setToken, takeTokenFromUrl} from './js/api.js';
import {byId, throttle} from './js/dom.js';
import {LiveSocket, eventsUrl} from './js/socket.js';
import {createAuthView} from './js/views/auth.js';
import {createChart} from './js/views/chart.js';
import {createControlsView} from './js/views/controls.js';
import {createHistoryView} from './js/views/history.js';
import {createLogsView} from './js/views/logs.js';
import {createMonitorView} from './js/views/monitor.js';
import {createPlanView} from './js/views/plan.js';
import {renderReport} from './js/views/report.js';
import {createRejectsView} from './js/views/rejects.js';
import {createSetupView} from './js/views/setup.js';

const FINAL = ['completed', 'failed', 'cancelled', 'interrupted', 'rolled_back'];
const ROLLBACK = ['rolling_back', 'rolled_back'];
const POLL_MS = 2000; // summary polling while the WebSocket is down

const state = {
  id: null, // the migration shown: the most recent one (newer ones are followed as they appear)
  summary: null,
  status: null,
  rollback: null, // rolling_back / rolled_back, which the summary of a run still in memory does not show
};

const header = {
  id: byId('migration-id'),
  status: byId('status'),
  error: byId('status-error'),
  endpoints: byId('migration-endpoints'),
  connection: byId('connection'),
};
const verificationBody = byId('verification-body');
const currentId = () => state.id;

const auth = createAuthView({onSave: (token) => {
  setToken(token);
  boot();
}});
const monitor = createMonitorView();
const chart = createChart();
const logs = createLogsView();
const rejects = createRejectsView({currentId});
const history = createHistoryView();
const plan = createPlanView({currentId, onPlanned: () => {
  statusFromAnswer('planned');
  refreshSummary();
}});
const controls = createControlsView({
  currentId,
  onStatus: (status) => statusFromAnswer(status),
  onReport: (report) => showReport(report),
  onExecuted: () => {
    chart.reset();
    refreshSummary();
  },
});
createSetupView({onInitialized: (migration) => {
  const {switched} = follow(migration.id);
  if (switched) loadDetails();
  if (migration.source || migration.target) {
    header.endpoints.textContent = `${migration.source || '?'} → ${migration.target || '?'}`;
  }
  setStatus(migration.status || 'initialized', migration.error);
  history.refresh();
  plan.discover();
}});

const refreshHistorySoon = throttle(() => history.refresh(), 1000);
const refreshRejectsSoon = throttle(() => rejects.load(), 1500);

const socket = new LiveSocket(() => eventsUrl(getToken()), onMessage, onConnection);

// -- state ------------------------------------------------------------------------------------------

/** Make `id` the migration shown when it is the same or newer; {ok, switched}. */
function follow(id) {
  if (!id) return {ok: false, switched: false};
  if (id === state.id) return {ok: true, switched: false};
  if (state.id && String(id) < String(state.id)) return {ok: false, switched: false}; // an older one
  state.id = String(id);
  state.summary = null;
  state.status = null;
  state.rollback = null;
  header.id.textContent = state.id;
  header.endpoints.textContent = '';
  monitor.reset();
  chart.reset();
  logs.reset();
  rejects.reset();
  plan.reset();
  renderReport(verificationBody, null);
  return {ok: true, switched: true};
}

/** Load what the summary does not carry: the log, the rejects, the report and the plan. */
function loadDetails() {
  const id = state.id;
  if (!id) return;
  logs.load(id);
  rejects.load();
  loadReport(id);
  loadPlan(id);
  loadRecord(id);
}

/**
 * Show a status. `fromSummary`: it comes from a summary, which for a run still in the service's
 * memory keeps saying how the run ended after a rollback: the rollback's status is kept then.
 */
function setStatus(status, error, {fromSummary = false} = {}) {
  if (!status) return;
  if (fromSummary && state.rollback && FINAL.includes(status)) status = state.rollback;
  else if (!fromSummary) state.rollback = ROLLBACK.includes(status) ? status : null;
  const before = state.status;
  state.status = status;
  header.status.textContent = status;
  header.status.dataset.status = status;
  if (error !== undefined) {
    header.error.textContent = error ? `Error: ${error}` : '';
    header.error.hidden = !error;
  }
  controls.setStatus(status);
  plan.setStatus(status);
  if (state.id) history.setStatus(state.id, status);
  if (before !== status) {
    refreshHistorySoon();
    if (FINAL.includes(status) && before !== null) {
      refreshSummary();
      rejects.load();
    }
  }
}

/**
 * The status in an answer to a request (pause → "pausing"). With the WebSocket open its status
 * events say it, in order; the answer may arrive after a later one ("paused"), so it is used only
 * when the socket is down (the polling corrects it then).
 */
function statusFromAnswer(status) {
  if (!socket.isOpen) setStatus(status);
}

function applySummary(summary) {
  if (!summary || typeof summary !== 'object') return;
  const {ok, switched} = follow(summary.id || state.id);
  if (!ok) return;
  state.summary = summary;
  monitor.render(summary);
  chart.sample(summary);
  if (Array.isArray(summary.tables)) logs.setTables(summary.tables.map((t) => t.name));
  if (summary.source || summary.target) header.endpoints.textContent = `${summary.source || '?'} → ${summary.target || '?'}`;
  setStatus(summary.status, summary.error, {fromSummary: true});
  if (switched) loadDetails();
}

function showNoMigration() {
  if (state.id) return;
  header.id.textContent = 'none';
  header.status.textContent = 'none';
  header.status.dataset.status = 'none';
  controls.setStatus(null);
  plan.setStatus(null);
  rejects.reset();
}

function showReport(report) {
  renderReport(verificationBody, report);
}

async function refreshSummary() {
  const id = state.id;
  if (!id) return;
  try {
    const answer = await get(migrationPath(id, 'summary'));
    if (id === state.id) applySummary(answer.summary);
  } catch (exc) {
    if (!(exc instanceof ApiError && exc.status === 401)) console.warn('summary', messageOf(exc));
  }
}

async function loadReport(id) {
  try {
    const answer = await get(migrationPath(id, 'report'));
    if (id === state.id) showReport(answer.report);
  } catch (exc) {
    if (id !== state.id) return;
    if (exc instanceof ApiError && exc.status === 404) renderReport(verificationBody, null);
    else console.warn('report', messageOf(exc));
  }
}

/** The migration's record: its status is the stored one (rolled_back after a rollback). */
async function loadRecord(id) {
  try {
    const answer = await get(migrationPath(id));
    const status = answer.migration && answer.migration.status;
    if (id === state.id && ROLLBACK.includes(status)) setStatus(status);
  } catch (exc) {
    if (!(exc instanceof ApiError && exc.status === 401)) console.warn('migration', messageOf(exc));
  }
}

async function loadPlan(id) {
  try {
    const answer = await get(migrationPath(id, 'plan'));
    if (id === state.id && answer.plan) plan.showReview(answer.plan);
  } catch {
    // 409: no plan made by this service process (initialized, or planned before a restart)
  }
}

// -- live events ------------------------------------------------------------------------------------

function onConnection(connection, detail) {
  const words = {connecting: 'connecting…', open: 'connected', reconnecting: 'reconnecting…', stopped: 'not connected'};
  header.connection.textContent = words[connection] || connection;
  header.connection.dataset.state = connection;
  if (connection === 'reconnecting' && detail && detail.delay) {
    header.connection.title = `next attempt in ${(detail.delay / 1000).toFixed(1)} s`;
  } else {
    header.connection.removeAttribute('title');
  }
  if (connection === 'open') {
    // the snapshot follows; fill what was missed while not connected
    if (state.id) {
      logs.load(state.id);
      if (detail && !detail.first) {
        rejects.load();
        loadReport(state.id);
      }
    }
    refreshHistorySoon();
  }
}

function onMessage(msg) {
  if (!msg || typeof msg !== 'object') return;
  const type = msg.type;
  if (type === 'snapshot') {
    if (msg.summary) applySummary(msg.summary);
    else showNoMigration();
    return;
  }
  if (type === 'ack') {
    controls.say(`${msg.action}: the migration is ${msg.status}.`, 'ok');
    if (msg.migrationId === state.id) setStatus(msg.status);
    return;
  }
  if (type === 'error') {
    controls.say(msg.error && msg.error.message ? msg.error.message : 'the service refused the request', 'error');
    return;
  }
  const id = msg.migrationId || (msg.summary && msg.summary.id);
  if (!id) return;
  const {ok, switched} = follow(id);
  if (!ok) { // another, older migration
    if (type === 'status') {
      history.setStatus(id, msg.status);
      refreshHistorySoon();
    }
    return;
  }
  if (switched) loadDetails();
  switch (type) {
    case 'status':
      setStatus(msg.status, msg.error === undefined ? null : msg.error);
      break;
    case 'progress':
      applySummary(msg.summary && typeof msg.summary === 'object' ? msg.summary : {...(state.summary || {}), ...msg, id});
      break;
    case 'log':
      if (msg.entry) {
        logs.add(msg.entry);
        if (String(msg.entry.level).toUpperCase() === 'ERROR') refreshRejectsSoon();
      }
      break;
    case 'plan':
      if (!plan.discovering && msg.plan) plan.showReview(msg.plan);
      break;
    case 'sync':
      if (msg.sync) applySummary({...(state.summary || {}), id, sync: msg.sync});
      break;
    case 'report':
      if (msg.summary) applySummary(msg.summary);
      if (msg.report) showReport(msg.report);
      break;
    default:
      break;
  }
}

// -- start ------------------------------------------------------------------------------------------

onUnauthorized((error) => {
  socket.stop();
  header.connection.textContent = 'not connected';
  header.connection.dataset.state = 'stopped';
  auth.show(getToken()
    ? `The service refused the token: ${error.message}`
    : 'This service needs its API token: the service prints it (or this page\'s URL with ?token=…) when it starts.');
});

async function boot() {
  auth.hide();
  let summary = null;
  try {
    summary = (await get('/api/migrations/summary')).summary;
  } catch (exc) {
    if (exc instanceof ApiError && exc.status === 401) return; // the token prompt is shown
    if (exc instanceof ApiError && exc.status === 404) showNoMigration();
    else controls.say(`The service did not answer: ${messageOf(exc)}`, 'error');
  }
  if (summary) applySummary(summary);
  history.refresh();
  socket.start();
}

setInterval(() => {
  if (!socket.running || socket.isOpen || auth.visible || !state.id || document.hidden) return;
  refreshSummary();
}, POLL_MS);

takeTokenFromUrl();
boot();
