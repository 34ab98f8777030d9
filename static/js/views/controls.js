// The run's buttons: Execute Migration, Pause, Resume, Cancel, Rollback (after confirm()), Verify
// (deep). Each is enabled only in the statuses where the service accepts it.

import {post, messageOf, migrationPath} from '../api.js';
import {byId, say} from '../dom.js';

const ENABLED = {
  execute: ['planned'],
  pause: ['executing'],
  resume: ['paused', 'pausing', 'interrupted', 'failed', 'cancelled'],
  cancel: ['initialized', 'planned', 'executing', 'pausing', 'paused', 'interrupted'],
  rollback: ['completed', 'failed', 'cancelled', 'interrupted', 'rolling_back'],
  verify: ['completed', 'failed', 'cancelled', 'interrupted', 'rolled_back'],
};

export function createControlsView({currentId, onStatus, onReport, onExecuted}) {
  const buttons = Object.fromEntries(Object.keys(ENABLED).map((name) => [name, byId(name)]));
  const message = byId('control-message');
  let status = null;
  let busy = null; // the action waiting for its answer

  function refresh() {
    for (const [name, button] of Object.entries(buttons)) {
      button.disabled = Boolean(busy) || !currentId() || !ENABLED[name].includes(status);
    }
  }

  async function act(name, path, body, describe) {
    const id = currentId();
    if (!id || busy) return;
    busy = name;
    refresh();
    say(message, describe.pending, 'info');
    try {
      const answer = await post(migrationPath(id, path), body);
      describe.done(answer);
    } catch (exc) {
      say(message, `${describe.failed}: ${messageOf(exc)}`, 'error');
    } finally {
      busy = null;
      refresh();
    }
  }

  buttons.execute.addEventListener('click', () => act('execute', 'execute', {}, {
    pending: 'Starting the migration…',
    failed: 'Execute failed',
    done(answer) {
      const m = answer.migration || {};
      say(message, `${answer.message || 'Migration started'}.`, 'ok');
      onExecuted(m);
      if (m.status) onStatus(m.status);
    },
  }));

  for (const verb of ['pause', 'resume', 'cancel']) {
    const words = {pause: 'Pausing', resume: 'Resuming', cancel: 'Cancelling'};
    buttons[verb].addEventListener('click', () => act(verb, verb, {}, {
      pending: `${words[verb]}…`,
      failed: `${verb[0].toUpperCase()}${verb.slice(1)} failed`,
      done(answer) {
        say(message, `${verb[0].toUpperCase()}${verb.slice(1)}: the migration is ${answer.status}.`, 'ok');
        if (answer.status) onStatus(answer.status);
      },
    }));
  }

  buttons.rollback.addEventListener('click', () => {
    const id = currentId();
    if (!id) return;
    const sure = window.confirm(`Roll back migration ${id}? The target returns to its state before the run: `
      + 'tables it created are dropped and rows it inserted are deleted.');
    if (!sure) {
      say(message, 'Rollback not started.', 'info');
      return;
    }
    act('rollback', 'rollback', {}, {
      pending: 'Rolling back…',
      failed: 'Rollback failed',
      done(answer) {
        say(message, `Rollback: the migration is ${answer.status}.`, 'ok');
        if (answer.status) onStatus(answer.status);
      },
    });
  });

  buttons.verify.addEventListener('click', () => act('verify', 'verify', {deep: true}, {
    pending: 'Verifying (counts and row checksums)…',
    failed: 'Verify failed',
    done(answer) {
      const ok = answer.report && answer.report.ok === true;
      say(message, `Verification: ${ok ? 'OK' : 'NOT OK'} (the report is below).`, ok ? 'ok' : 'error');
      onReport(answer.report);
    },
  }));

  refresh();
  return {
    setStatus(value) {
      status = value;
      refresh();
    },
    say(text, kind) {
      say(message, text, kind);
    },
  };
}
