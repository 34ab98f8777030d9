// Small DOM helpers. Text always goes in through textContent (never innerHTML), so whatever the
// server or a database sends is shown as text, not markup.

/** The element with this id (throws when the page lacks it: a bug in index.html). */
export function byId(id) {
  const found = document.getElementById(id);
  if (!found) throw new Error(`the page has no element #${id}`);
  return found;
}

/**
 * Create an element: el('li', {class: 'x', text: 'hello', attrs: {'aria-label': 'y'}, on: {click: fn}}, child…)
 * Children may be nodes, strings (as text) or null/undefined (skipped).
 */
export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  if (props.class) node.className = props.class;
  if (props.text !== undefined && props.text !== null) node.textContent = String(props.text);
  if (props.attrs) {
    for (const [name, value] of Object.entries(props.attrs)) {
      if (value === undefined || value === null || value === false) continue;
      node.setAttribute(name, value === true ? '' : String(value));
    }
  }
  if (props.on) {
    for (const [name, handler] of Object.entries(props.on)) node.addEventListener(name, handler);
  }
  append(node, ...children);
  return node;
}

/** Append children (nodes or text). */
export function append(parent, ...children) {
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    parent.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return parent;
}

/** Remove every child. */
export function clear(node) {
  while (node.firstChild) node.removeChild(node.firstChild);
  return node;
}

/** Show a message in a live region; kind 'error' | 'ok' | 'info' styles it. */
export function say(node, text, kind = 'info') {
  node.textContent = text || '';
  node.dataset.kind = kind;
}

/** Set a progress bar (role=progressbar, with a child .bar-fill) to a 0–100 value. */
export function setProgress(bar, percent, valuetext) {
  const value = clampPercent(percent);
  bar.setAttribute('aria-valuenow', String(value));
  if (valuetext) bar.setAttribute('aria-valuetext', valuetext);
  const fill = bar.querySelector('.bar-fill');
  if (fill) fill.style.width = `${value}%`;
}

/** A whole number 0–100 (floored, so 99.9 % is not shown as done). */
export function clampPercent(percent) {
  const n = Number(percent);
  if (!Number.isFinite(n)) return 0;
  return Math.max(0, Math.min(100, Math.floor(n)));
}

/** A progress bar element: <div role=progressbar aria-label=…><div class=bar-fill></div></div>. */
export function progressBar(label) {
  return el('div', {
    class: 'bar',
    attrs: {role: 'progressbar', 'aria-valuemin': '0', 'aria-valuemax': '100', 'aria-valuenow': '0',
            'aria-label': label},
  }, el('div', {class: 'bar-fill'}));
}

/** Run fn at most once per `ms` (trailing call kept). */
export function throttle(fn, ms) {
  let timer = null;
  let pending = false;
  return (...args) => {
    if (timer) {
      pending = true;
      return;
    }
    fn(...args);
    timer = setTimeout(function tick() {
      timer = null;
      if (pending) {
        pending = false;
        fn(...args);
        timer = setTimeout(tick, ms);
      }
    }, ms);
  };
}
