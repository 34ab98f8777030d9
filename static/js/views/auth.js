// The token prompt: shown when the page has no token and the service wants one, or refused it.

import {byId} from '../dom.js';

export function createAuthView({onSave}) {
  const panel = byId('auth-panel');
  const reason = byId('auth-reason');
  const form = byId('auth-form');
  const input = byId('token-input');

  form.addEventListener('submit', (event) => {
    event.preventDefault();
    const token = input.value.trim();
    if (!token) {
      reason.textContent = 'Type the API token first (the service prints it when it starts).';
      input.focus();
      return;
    }
    input.value = '';
    onSave(token);
  });

  return {
    show(message) {
      reason.textContent = message;
      const wasHidden = panel.hidden;
      panel.hidden = false;
      if (wasHidden) input.focus();
    },
    hide() {
      panel.hidden = true;
    },
    get visible() {
      return !panel.hidden;
    },
  };
}
