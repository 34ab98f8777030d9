// The REST API: the token (from ?token= or the prompt, kept in sessionStorage), a fetch wrapper
// that sends it as `Authorization: Bearer …`, and errors turned into messages.

const TOKEN_KEY = 'migrator.apiToken';
let unauthorizedHandler = null;

export class ApiError extends Error {
  constructor(status, code, message, details) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
    this.details = details;
  }
}

function storage() {
  try {
    return window.sessionStorage;
  } catch {
    return null; // storage switched off: the token lives only in memory
  }
}

let memoryToken = null;

export function getToken() {
  const store = storage();
  const stored = store ? store.getItem(TOKEN_KEY) : null;
  return stored || memoryToken;
}

export function setToken(token) {
  const value = (token || '').trim();
  memoryToken = value || null;
  const store = storage();
  if (!store) return;
  if (value) store.setItem(TOKEN_KEY, value);
  else store.removeItem(TOKEN_KEY);
}

/** Move ?token= from the address bar into sessionStorage (the URL is rewritten without it). */
export function takeTokenFromUrl() {
  const url = new URL(window.location.href);
  const token = url.searchParams.get('token');
  if (token === null) return false;
  if (token.trim()) setToken(token);
  url.searchParams.delete('token');
  const rest = url.searchParams.toString();
  window.history.replaceState(window.history.state, '', url.pathname + (rest ? `?${rest}` : '') + url.hash);
  return true;
}

/** Called with the ApiError whenever the service answers 401. */
export function onUnauthorized(handler) {
  unauthorizedHandler = handler;
}

/** `/api/migrations/<verb>` for the most recent migration, `/api/migrations/<id>/<verb>` for one. */
export function migrationPath(id, verb) {
  const base = id ? `/api/migrations/${encodeURIComponent(id)}` : '/api/migrations';
  return verb ? `${base}/${verb}` : base;
}

/**
 * Call the API. Resolves with the parsed JSON (or the Response itself with {raw: true});
 * rejects with an ApiError whose message is the service's own (status 0: not reachable).
 */
export async function request(method, path, body, options = {}) {
  const headers = {Accept: options.raw ? '*/*' : 'application/json'};
  const token = getToken();
  if (token) headers.Authorization = `Bearer ${token}`;
  const init = {method, headers, cache: 'no-store'};
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (exc) {
    throw new ApiError(0, 'unreachable', `cannot reach the service (${exc && exc.message ? exc.message : exc})`);
  }
  if (response.ok && options.raw) return response;
  let data = null;
  const textBody = await response.text().catch(() => '');
  if (textBody) {
    try {
      data = JSON.parse(textBody);
    } catch {
      data = null;
    }
  }
  if (!response.ok) {
    const error = data && data.error && typeof data.error === 'object' ? data.error : {};
    const message = typeof error.message === 'string' && error.message
      ? error.message
      : `${response.status} ${response.statusText || 'error'}${textBody && !data ? `: ${textBody.slice(0, 200)}` : ''}`;
    const failure = new ApiError(response.status, error.code || 'http_error', message, error.details);
    if (response.status === 401 && unauthorizedHandler) {
      try {
        unauthorizedHandler(failure);
      } catch (exc) {
        console.error(exc);
      }
    }
    throw failure;
  }
  if (data === null) throw new ApiError(response.status, 'bad_response', 'the service sent an answer that is not JSON');
  return data;
}

export const get = (path) => request('GET', path);
export const post = (path, body = {}) => request('POST', path, body);

/** The message of any error, for people. */
export function messageOf(exc) {
  if (exc instanceof ApiError) return exc.message;
  if (exc && exc.message) return exc.message;
  return String(exc);
}

/** Download an API file (sent with the token) as `fallbackName` or the name the service gives. */
export async function download(path, fallbackName) {
  const response = await request('GET', path, undefined, {raw: true});
  const blob = await response.blob();
  const disposition = response.headers.get('Content-Disposition') || '';
  const match = /filename="?([^";]+)"?/i.exec(disposition);
  const name = match ? match[1] : fallbackName;
  const url = URL.createObjectURL(blob);
  const link = document.createElement('a');
  link.href = url;
  link.download = name;
  link.hidden = true;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
  return name;
}
