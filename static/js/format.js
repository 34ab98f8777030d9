// Numbers, durations and times for people.

const numberFormat = new Intl.NumberFormat('en-US', {maximumFractionDigits: 0});

export function isNumber(value) {
  return typeof value === 'number' && Number.isFinite(value);
}

/** 50000 → "50,000"; null → "—". */
export function count(value) {
  return isNumber(value) ? numberFormat.format(value) : '—';
}

/** part of whole as "0.01%" (two decimals below 1 %, one above). */
export function percentOf(part, whole) {
  if (!isNumber(part) || !isNumber(whole) || whole <= 0) return '0%';
  const p = (100 * part) / whole;
  if (p === 0) return '0%';
  if (p < 0.01) return '<0.01%';
  return `${p < 1 ? p.toFixed(2) : p.toFixed(1)}%`;
}

/** Seconds as "0.3 s", "12 s", "4 min 05 s", "1 h 02 min". */
export function duration(seconds) {
  if (!isNumber(seconds)) return '—';
  if (seconds < 10) return `${seconds.toFixed(1)} s`;
  const s = Math.round(seconds);
  if (s < 60) return `${s} s`;
  const minutes = Math.floor(s / 60);
  if (minutes < 60) return `${minutes} min ${String(s % 60).padStart(2, '0')} s`;
  return `${Math.floor(minutes / 60)} h ${String(minutes % 60).padStart(2, '0')} min`;
}

/** Records per second as "12,345 records/s". */
export function rate(value) {
  return isNumber(value) ? `${numberFormat.format(value)} records/s` : '—';
}

/** An ISO timestamp as local "HH:MM:SS.mmm" (or the text itself when it does not parse). */
export function clock(iso) {
  if (!iso) return '';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return String(iso);
  const pad = (n, w = 2) => String(n).padStart(w, '0');
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}

/** An ISO timestamp as a local date and time. */
export function dateTime(iso) {
  if (!iso) return '—';
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? String(iso) : d.toLocaleString();
}

/** Any value as short text (objects as JSON). */
export function text(value) {
  if (value === undefined || value === null) return '';
  if (typeof value === 'object') {
    try {
      return JSON.stringify(value);
    } catch {
      return String(value);
    }
  }
  return String(value);
}
