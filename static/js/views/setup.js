// "1. Connect": Source DB and Target DB, Initialize, the answer and each side's connection.

import {post, messageOf, ApiError} from '../api.js';
import {byId, say} from '../dom.js';

export function createSetupView({onInitialized}) {
  const form = byId('init-form');
  const source = byId('source-db');
  const target = byId('target-db');
  const button = byId('initialize');
  const result = byId('init-result');
  const sides = {source: byId('source-status'), target: byId('target-status')};

  function setSide(side, state, detail) {
    const node = sides[side];
    const name = side === 'source' ? 'Source' : 'Target';
    node.dataset.state = state;
    const words = {connected: 'connected', failed: 'failed', unknown: 'not tested', invalid: 'invalid URL'};
    node.textContent = `${name}: ${words[state] || state}${detail ? ` — ${detail}` : ''}`;
  }

  /** Which side an initialize error is about: from details.field (400) or the message (502). */
  function sideOf(error) {
    const field = error instanceof ApiError && error.details && error.details.field;
    if (field === 'sourceDB') return 'source';
    if (field === 'targetDB') return 'target';
    const message = String(error && error.message ? error.message : '').toLowerCase();
    if (message.startsWith('source') || message.startsWith('sourcedb')) return 'source';
    if (message.startsWith('target') || message.startsWith('targetdb')) return 'target';
    return null;
  }

  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const sourceDB = source.value.trim();
    const targetDB = target.value.trim();
    if (!sourceDB || !targetDB) {
      say(result, `Fill in ${!sourceDB ? 'Source DB' : 'Target DB'} first.`, 'error');
      (!sourceDB ? source : target).focus();
      return;
    }
    button.disabled = true;
    say(result, 'Testing both connections…', 'info');
    setSide('source', 'unknown');
    setSide('target', 'unknown');
    try {
      const answer = await post('/api/migrations/initialize', {sourceDB, targetDB});
      say(result, answer.message || 'Migration manager initialized successfully', 'ok');
      setSide('source', 'connected');
      setSide('target', 'connected');
      if (answer.migration) onInitialized(answer.migration);
    } catch (exc) {
      say(result, messageOf(exc), 'error');
      const side = sideOf(exc);
      const kind = exc instanceof ApiError && exc.status === 400 ? 'invalid' : 'failed';
      if (side === 'source') {
        setSide('source', kind);
      } else if (side === 'target') {
        // the source is tested first: a target failure means the source answered
        setSide('source', kind === 'failed' ? 'connected' : 'unknown');
        setSide('target', kind);
      }
    } finally {
      button.disabled = false;
    }
  });

  return {};
}
