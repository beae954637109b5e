// Building DOM nodes without HTML strings: every piece of text, from the server or the user,
// becomes a text node, so a title like <img src=x onerror=alert(1)> shows those characters.

/** h('a.badge', { href }, 'text', child, …): an element with attributes, listeners and children. */
export function h(spec, attrs = {}, ...children) {
  const [head, ...classes] = spec.split('.');
  const [tag, id] = head.split('#');
  const el = document.createElement(tag || 'div');
  if (id) el.id = id;
  if (classes.length) el.className = classes.join(' ');
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith('on') && typeof value === 'function') {
      el.addEventListener(key.slice(2).toLowerCase(), value);
    } else if (key === 'class') {
      el.className += (el.className ? ' ' : '') + value;
    } else if (key === 'dataset') {
      Object.assign(el.dataset, value);
    } else if (key === 'value') {
      el.value = value;
    } else if (key === 'checked') {
      el.checked = Boolean(value);
    } else {
      el.setAttribute(key, value === true ? '' : String(value));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === undefined || child === null || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else if (child instanceof Node) el.appendChild(child);
    else el.appendChild(document.createTextNode(String(child)));
  }
}

const SVG = 'http://www.w3.org/2000/svg';

/** An SVG element with attributes and children (text children become text nodes). */
export function s(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value !== undefined && value !== null) el.setAttribute(key, String(value));
  }
  append(el, children);
  return el;
}

export function clear(el) {
  while (el.firstChild) el.removeChild(el.firstChild);
  return el;
}

export function replace(el, ...children) {
  clear(el);
  append(el, children);
  return el;
}

const dateTime = new Intl.DateTimeFormat(undefined, {
  year: 'numeric', month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit',
});
const dateOnly = new Intl.DateTimeFormat(undefined, { month: 'short', day: 'numeric' });
const timeOnly = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit', second: '2-digit' });

export const formatDateTime = (iso) => (iso ? dateTime.format(new Date(iso)) : '');
export const formatTime = (iso) => (iso ? timeOnly.format(new Date(iso)) : '');
export const formatDay = (isoDate) => dateOnly.format(new Date(`${isoDate}T00:00:00Z`));

/** A duration in seconds as "3 d 4 h", "2 h 5 m", "4 m 10 s". */
export function formatDuration(seconds) {
  if (seconds === null || seconds === undefined || Number.isNaN(seconds)) return '—';
  let s = Math.max(0, Math.round(seconds));
  const d = Math.floor(s / 86400); s -= d * 86400;
  const hr = Math.floor(s / 3600); s -= hr * 3600;
  const m = Math.floor(s / 60); s -= m * 60;
  if (d) return `${d} d ${hr} h`;
  if (hr) return `${hr} h ${m} m`;
  if (m) return `${m} m ${s} s`;
  return `${s} s`;
}

/** "5 m ago" for a recent time, the date otherwise. */
export function ago(iso) {
  const seconds = (Date.now() - new Date(iso).getTime()) / 1000;
  if (seconds < 45) return 'just now';
  if (seconds < 7 * 86400) return `${formatDuration(seconds).split(' ').slice(0, 2).join(' ')} ago`;
  return formatDateTime(iso);
}

/** The id of the element that has focus is in a form field: single-key shortcuts stay off. */
export function typing(target) {
  if (!target || !(target instanceof Element)) return false;
  return Boolean(target.closest('input, textarea, select, [contenteditable="true"]'));
}

export function toast(message) {
  const el = document.getElementById('toast');
  el.textContent = message;
  el.classList.add('shown');
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => el.classList.remove('shown'), 4000);
}

/** How the desk names a person: their name, else their email; never their id. */
export function personName(person) {
  if (!person) return 'someone unknown';
  return person.name || person.email || 'someone without a name';
}

export const SEVERITIES = ['SEV1', 'SEV2', 'SEV3', 'SEV4'];
export const STATUSES = ['OPEN', 'MITIGATING', 'RESOLVED', 'CLOSED'];
export const STATUS_WORDS = { OPEN: 'Open', MITIGATING: 'Mitigating', RESOLVED: 'Resolved', CLOSED: 'Closed' };

export function severityBadge(severity) {
  return h(`span.badge.sev-${severity.toLowerCase()}`, { title: `Severity ${severity}` }, severity);
}

export function statusBadge(status) {
  return h(`span.badge.status.status-${status.toLowerCase()}`, {}, STATUS_WORDS[status] || status);
}
