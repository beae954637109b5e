// /desk/incidents: the live list with its filters (kept in the address), the incident view with
// its live timeline, and the metrics panel. Workflow and filter rules are the server's: the
// buttons come from `transitions`, the hint from `closeBlocker`, and the live list keeps what
// the change feed says `matchesFilter`.

import {
  h, replace, clear, ago, formatDateTime, formatTime, formatDuration, severityBadge, statusBadge,
  personName, SEVERITIES, STATUSES, STATUS_WORDS, toast,
} from './dom.js';
import { gql, live, on, describe } from './gql.js';
import { navigate, openDeclare } from './app.js';
import { mountMetrics } from './metrics.js';

const DEFAULT_STATUSES = ['OPEN', 'MITIGATING'];
const AUTOMATIC = new Set(['status_changed', 'severity_changed', 'role_assigned', 'role_unassigned']);
const ROLES = [
  ['COMMANDER', 'Commander'],
  ['COMMUNICATIONS', 'Communications'],
  ['SCRIBE', 'Scribe'],
];
const PERSON = 'id name email';
const PAGE = 50;

const FIELDS = `id title status severity startedAt resolvedAt createdAt updatedAt linkedTicketIds transitions { to needsNote } closeBlocker { message } postmortem { id } editable creator { ${PERSON} } roles { role person { ${PERSON} } }`;

const LIST = `query($filter: IncidentFilter, $first: Int, $after: String) {
  incidents(filter: $filter, first: $first, after: $after) {
    totalCount pageInfo { hasNextPage endCursor } nodes { ${FIELDS} }
  }
}`;

const COUNTS = `query($o: IncidentFilter, $m: IncidentFilter, $r: IncidentFilter, $c: IncidentFilter) {
  OPEN: incidents(filter: $o, first: 1) { totalCount }
  MITIGATING: incidents(filter: $m, first: 1) { totalCount }
  RESOLVED: incidents(filter: $r, first: 1) { totalCount }
  CLOSED: incidents(filter: $c, first: 1) { totalCount }
}`;

// Every change: the status counts, the metrics and the open incident follow it.
const CHANGES = `subscription { incidentChanged { kind incident { ${FIELDS} } } }`;

// The list's changes, under its filter: the server says whether each incident still matches.
const LIST_CHANGES = `subscription($filter: IncidentFilter) {
  incidentChanged(filter: $filter) { matchesFilter incident { ${FIELDS} } }
}`;

const ONE = `query($id: UUID!) { incident(id: $id) { ${FIELDS} } }`;

const TIMELINE = `subscription($id: UUID!, $after: Int) {
  incidentEvents(incidentId: $id, afterSequence: $after) { sequence eventType content createdAt author { ${PERSON} } }
}`;

/**
 * When the server last changed an incident's fields, as a number that orders exactly (the
 * fraction of a second in full: two changes within one millisecond still compare).
 */
function version(incident) {
  const at = incident && incident.updatedAt;
  if (!at) return -1n;
  const [, whole, fraction = '', zone] = /^([^.]*?)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$/.exec(at) || [];
  const ms = Date.parse(`${whole}${zone}`);
  if (Number.isNaN(ms)) return -1n;
  return BigInt(ms) * 1000000n + BigInt(fraction.padEnd(9, '0').slice(0, 9));
}

const PEOPLE = `query($search: String) { people(search: $search, first: 8) { nodes { ${PERSON} } } }`;

/** Who the caller is in the people directory (null until it knows them): "Mine" filters by it. */
let me = null;
async function loadMe() {
  try {
    const data = await gql('{ viewer { person { id } } }');
    me = data.viewer.person ? data.viewer.person.id : null;
  } catch {
    me = null;
  }
  return me;
}

/** The filters of an address: status (default OPEN and MITIGATING), severity, search, mine. */
function readFilters(query) {
  const status = query.has('status')
    ? query.get('status').split(',').filter((x) => STATUSES.includes(x))
    : DEFAULT_STATUSES;
  const severity = (query.get('severity') || '').split(',').filter((x) => SEVERITIES.includes(x));
  return { status, severity, search: query.get('q') || '', mine: query.get('mine') === '1' };
}

function writeFilters(f) {
  const q = new URLSearchParams();
  const isDefault = f.status.length === DEFAULT_STATUSES.length && DEFAULT_STATUSES.every((x) => f.status.includes(x));
  if (!isDefault) q.set('status', STATUSES.filter((x) => f.status.includes(x)).join(','));
  if (f.severity.length) q.set('severity', f.severity.join(','));
  if (f.search) q.set('q', f.search);
  if (f.mine) q.set('mine', '1');
  const text = q.toString();
  return text ? `?${text}` : '';
}

function apiFilter(f, { withStatus = true } = {}) {
  const filter = {};
  if (withStatus && f.status.length) filter.status = f.status;
  if (f.severity.length) filter.severity = f.severity;
  if (f.search) filter.search = f.search;
  // The server knows who holds a role; the desk only names the person.
  if (f.mine && me) filter.person = me;
  return filter;
}

export function mount(main, params) {
  return new IncidentsView(main, params);
}

class IncidentsView {
  constructor(main, params) {
    this.filters = readFilters(params.query);
    this.rows = new Map(); // id → { incident, li }
    this.selected = null;
    this.detail = null;
    this.layout = h('div.incidents-layout');
    main.append(this.layout);
    this.buildList();
    this.detailPane = h('section.detail-pane', { 'aria-label': 'Incident' });
    this.layout.append(this.detailPane);
    this.metrics = mountMetrics(this.layout);
    this.cleanup = [
      live.subscribe(CHANGES, () => ({}), { next: (payload) => this.onChange(payload) }),
      on('reconnected', () => this.refetch()),
      () => this.stopListChanges(),
    ];
    this.select(params.id);
    // "Mine" needs to know who "me" is before the list is asked for.
    loadMe().then(() => {
      this.syncControls();
      this.subscribeList();
      this.refetch();
    });
  }

  buildList() {
    this.chips = {};
    const chips = h('div.chips', { role: 'group', 'aria-label': 'Status' },
      STATUSES.map((status) => {
        const count = h('span.count', {}, '');
        const chip = h(`button.chip.chip-${status.toLowerCase()}`, {
          type: 'button',
          'aria-pressed': String(this.filters.status.includes(status)),
          onclick: () => this.toggleStatus(status),
        }, STATUS_WORDS[status], ' ', count);
        this.chips[status] = { chip, count };
        return chip;
      }));
    this.severitySelect = h('select#severity-filter', {
      id: 'severity-filter',
      onchange: () => this.setFilters({ severity: this.severitySelect.value ? [this.severitySelect.value] : [] }),
    },
    h('option', { value: '' }, 'Any severity'),
    SEVERITIES.map((sev) => h('option', { value: sev }, sev)));
    this.search = h('input#search', {
      id: 'search', type: 'search', placeholder: 'Search titles', autocomplete: 'off',
      'aria-keyshortcuts': '/',
      oninput: () => {
        clearTimeout(this.searchTimer);
        this.searchTimer = setTimeout(() => this.setFilters({ search: this.search.value.trim() }), 250);
      },
    });
    this.mine = h('button#mine.chip.chip-mine', {
      id: 'mine',
      type: 'button',
      'aria-pressed': String(this.filters.mine),
      title: 'Incidents where you hold a role',
      onclick: () => this.setFilters({ mine: !this.filters.mine }),
    }, 'Mine');
    this.listStatus = h('p.list-status', { role: 'status', 'aria-live': 'polite' }, '');
    this.list = h('ul.incident-list', { id: 'incident-list', 'aria-labelledby': 'list-title' });
    this.more = h('button.more', { type: 'button', hidden: true, onclick: () => this.loadMore() }, 'Show more');
    this.listError = h('p.error-box', { role: 'alert', hidden: true });
    this.listPane = h('section.list-pane', { 'aria-labelledby': 'list-title' },
      h('div.list-head', {},
        h('h1#list-title', { id: 'list-title' }, 'Incidents'),
        h('button.primary', { type: 'button', onclick: openDeclare, 'aria-keyshortcuts': 'n' }, 'Declare incident')),
      h('div.filters', {},
        h('div.chip-row', {}, chips, this.mine),
        h('div.filter-row', {},
          h('div.field', {}, h('label', { for: 'severity-filter' }, 'Severity'), this.severitySelect),
          h('div.field.grow', {}, h('label', { for: 'search' }, 'Search'), this.search))),
      this.listError,
      this.listStatus,
      this.list,
      this.more);
    this.layout.append(this.listPane);
    this.syncControls();
  }

  syncControls() {
    for (const status of STATUSES) {
      this.chips[status].chip.setAttribute('aria-pressed', String(this.filters.status.includes(status)));
    }
    this.severitySelect.value = this.filters.severity.length === 1 ? this.filters.severity[0] : '';
    this.mine.setAttribute('aria-pressed', String(this.filters.mine && Boolean(me)));
    this.mine.disabled = !me;
    if (document.activeElement !== this.search) this.search.value = this.filters.search;
  }

  toggleStatus(status) {
    const set = new Set(this.filters.status);
    if (set.has(status)) set.delete(status); else set.add(status);
    this.setFilters({ status: STATUSES.filter((x) => set.has(x)) });
  }

  /** Changes filters: the address follows (a reload or a shared link keeps them). */
  setFilters(change) {
    this.filters = { ...this.filters, ...change };
    if (change.status && !change.status.length) this.filters.status = [];
    history.replaceState(null, '', location.pathname + writeFilters(this.filters));
    this.syncControls();
    this.subscribeList();
    this.refetch({ metrics: false });
  }

  /** (Re)subscribes the list's feed under the current filters. */
  subscribeList() {
    this.stopListChanges();
    const filter = apiFilter(this.filters);
    this.unsubscribeList = live.subscribe(LIST_CHANGES, () => ({ filter }), {
      next: (payload) => this.onListChange(payload),
    });
  }

  stopListChanges() {
    if (this.unsubscribeList) this.unsubscribeList();
    this.unsubscribeList = null;
  }

  get queryString() {
    return writeFilters(this.filters);
  }

  update(params) {
    const filters = readFilters(params.query);
    if (JSON.stringify(filters) !== JSON.stringify(this.filters)) {
      this.filters = filters;
      this.syncControls();
      this.subscribeList();
      this.refetch({ metrics: false });
    }
    this.select(params.id);
  }

  async refetch({ metrics = true } = {}) {
    const generation = (this.generation = (this.generation || 0) + 1);
    // What the list's feed delivers while the list is asked for: the answer may have been read
    // before those changes, so they are applied again over it.
    const arrived = (this.arrived = new Map());
    this.loadCounts();
    if (metrics) this.metrics.refresh();
    if (this.detail) this.detail.reload();
    try {
      const data = await gql(LIST, { filter: apiFilter(this.filters), first: PAGE });
      if (generation !== this.generation) return;
      this.arrived = null;
      this.listError.hidden = true;
      clear(this.list);
      this.rows.clear();
      this.renderPage(data.incidents);
      for (const change of arrived.values()) this.applyListChange(change);
    } catch (e) {
      if (generation !== this.generation) return;
      this.arrived = null;
      this.listError.hidden = false;
      this.listError.textContent = describe(e);
    }
  }

  renderPage(page) {
    for (const incident of page.nodes) this.upsert(incident, { append: true });
    this.total = page.totalCount;
    this.cursor = page.pageInfo.endCursor;
    this.more.hidden = !page.pageInfo.hasNextPage;
    this.updateListStatus();
  }

  async loadMore() {
    try {
      const data = await gql(LIST, { filter: apiFilter(this.filters), first: PAGE, after: this.cursor });
      this.renderPage(data.incidents);
    } catch (e) {
      toast(describe(e));
    }
  }

  updateListStatus() {
    const n = this.total ?? this.rows.size;
    this.listStatus.textContent = n === 0
      ? 'No incidents match these filters.'
      : `${n} incident${n === 1 ? '' : 's'} match${n === 1 ? 'es' : ''}.`;
  }

  async loadCounts() {
    const vars = {};
    const base = apiFilter(this.filters, { withStatus: false });
    for (const [key, status] of [['o', 'OPEN'], ['m', 'MITIGATING'], ['r', 'RESOLVED'], ['c', 'CLOSED']]) {
      vars[key] = { ...base, status: [status] };
    }
    try {
      const data = await gql(COUNTS, vars);
      for (const status of STATUSES) {
        this.chips[status].count.textContent = String(data[status].totalCount);
        this.chips[status].chip.setAttribute('aria-label', `${STATUS_WORDS[status]}: ${data[status].totalCount}`);
      }
    } catch {
      // The chips still filter without their counts.
    }
  }

  countsSoon() {
    clearTimeout(this.countTimer);
    this.countTimer = setTimeout(() => this.loadCounts(), 300);
  }

  rowFor(incident) {
    const link = h('a.row', {
      href: `/desk/incidents/${incident.id}${this.queryString}`,
      'aria-current': this.selected === incident.id ? 'true' : null,
      dataset: { id: incident.id },
    },
    h('span.row-top', {}, severityBadge(incident.severity), h('span.row-title', {}, incident.title)),
    h('span.row-meta', {}, statusBadge(incident.status), h('span.muted', {}, `started ${ago(incident.startedAt)}`)));
    return link;
  }

  /** Adds or replaces a row in place, newest declared first. */
  upsert(incident, { append = false, fresh = false } = {}) {
    const existing = this.rows.get(incident.id);
    if (existing) {
      existing.incident = incident;
      replace(existing.li, this.rowFor(incident));
      return;
    }
    const created = Date.parse(incident.createdAt);
    const li = h('li', { class: fresh ? 'fresh' : null, dataset: { created } }, this.rowFor(incident));
    this.rows.set(incident.id, { incident, li });
    if (append) {
      this.list.append(li);
      return;
    }
    const older = [...this.list.children].find((other) => Number(other.dataset.created) < created);
    if (older) this.list.insertBefore(li, older); else this.list.append(li);
  }

  remove(id) {
    const row = this.rows.get(id);
    if (!row) return;
    row.li.remove();
    this.rows.delete(id);
  }

  onChange(payload) {
    const change = payload && payload.data && payload.data.incidentChanged;
    if (!change) return;
    const { incident, kind } = change;
    this.countsSoon();
    this.metrics.soon();
    if (this.detail && this.detail.id === incident.id) this.detail.changed(incident, kind);
  }

  /** A change under the list's filter: the server's `matchesFilter` says whether it stays. */
  onListChange(payload) {
    const change = payload && payload.data && payload.data.incidentChanged;
    if (!change) return;
    if (this.arrived) this.arrived.set(change.incident.id, change);
    this.applyListChange(change);
  }

  /** Applies a change, unless the row already shows a newer state (by the server's `updatedAt`). */
  applyListChange({ incident, matchesFilter }) {
    const row = this.rows.get(incident.id);
    if (row && version(row.incident) > version(incident)) return;
    const had = Boolean(row);
    if (matchesFilter) {
      this.upsert(incident, { fresh: !had });
      if (!had && this.total !== undefined) this.total += 1;
    } else if (had) {
      this.remove(incident.id);
      if (this.total !== undefined) this.total -= 1;
    }
    this.updateListStatus();
  }

  select(id) {
    if (id === this.selected && this.detail) return;
    this.selected = id;
    for (const { incident, li } of this.rows.values()) {
      const link = li.firstChild;
      if (incident.id === id) link.setAttribute('aria-current', 'true'); else link.removeAttribute('aria-current');
    }
    if (this.detail) this.detail.unmount();
    this.detail = null;
    this.layout.classList.toggle('has-detail', Boolean(id));
    if (id) {
      this.detail = new IncidentDetail(this.detailPane, id, this);
    } else {
      replace(this.detailPane, h('div.placeholder', {},
        h('p', {}, 'Choose an incident to see its timeline, or declare a new one.'),
        h('p.muted', {}, 'Press ? for the keyboard shortcuts.')));
    }
  }

  key(event) {
    if (event.key === '/') {
      event.preventDefault();
      this.search.focus();
      this.search.select();
      return;
    }
    if (event.key !== 'j' && event.key !== 'k') return;
    event.preventDefault();
    const links = [...this.list.querySelectorAll('a.row')];
    if (!links.length) return;
    const at = links.indexOf(document.activeElement);
    const from = at >= 0 ? at : links.findIndex((l) => l.getAttribute('aria-current') === 'true');
    let next;
    if (from < 0) next = event.key === 'j' ? 0 : links.length - 1;
    else next = Math.max(0, Math.min(links.length - 1, from + (event.key === 'j' ? 1 : -1)));
    links[next].focus();
    links[next].scrollIntoView({ block: 'nearest' });
  }

  unmount() {
    for (const stop of this.cleanup) stop();
    if (this.detail) this.detail.unmount();
    this.metrics.unmount();
    clearTimeout(this.countTimer);
    clearTimeout(this.searchTimer);
    this.layout.remove();
  }
}

const TRANSITION_WORDS = {
  MITIGATING: (from) => (from === 'RESOLVED' ? 'Reopen as mitigating' : 'Start mitigating'),
  RESOLVED: () => 'Resolve',
  CLOSED: () => 'Close',
  OPEN: () => 'Reopen',
};

/** One incident: its facts, the workflow's buttons, severity, and the live timeline. */
class IncidentDetail {
  constructor(pane, id, list) {
    this.pane = pane;
    this.id = id;
    this.list = list;
    this.lastSequence = 0;
    this.incident = null;
    // Counts the states shown that came from the change feed or a mutation's answer.
    this.shown = 0;
    this.root = h('article.detail', { 'aria-labelledby': 'detail-title' }, h('p.muted', {}, 'Loading…'));
    replace(pane, this.root);
    this.reload();
    this.tick = setInterval(() => this.renderElapsed(), 15000);
  }

  /**
   * Asks for the incident (on opening, after a reconnect). The answer is the incident as read
   * when the query ran, which may be before a change the feed delivered while the answer was
   * on its way: once a newer state has been shown, a late answer is dropped (the feed tells
   * every change committed after the one it delivered).
   */
  async reload() {
    const shown = this.shown;
    try {
      const data = await gql(ONE, { id: this.id });
      if (this.shown !== shown && this.incident) return;
      this.render(data.incident);
    } catch (e) {
      replace(this.root,
        h('a.back', { href: `/desk/incidents${this.list.queryString}` }, '← All incidents'),
        h('h2#detail-title', { id: 'detail-title' }, 'Incident not available'),
        h('p.error-box', { role: 'alert' }, describe(e)));
    }
  }

  changed(incident, kind) {
    // The timeline has its own subscription; everything else is redrawn from the change.
    if (kind === 'EVENT_ADDED' && this.incident && this.incident.status === incident.status) return;
    this.show(incident);
  }

  /** A state from the change feed or a mutation's answer: never older than the change. */
  show(incident) {
    if (this.render(incident)) this.shown += 1;
  }

  /**
   * Draws the incident, unless it is older than the one shown (by the server's `updatedAt`):
   * answers and feed deliveries may arrive in any order. Returns whether it drew.
   */
  render(incident) {
    const first = !this.incident;
    if (!first && version(incident) < version(this.incident)) return false;
    this.incident = incident;
    if (first) this.build();
    this.title.textContent = incident.title;
    replace(this.badges, statusBadge(incident.status), severityBadge(incident.severity));
    this.started.textContent = formatDateTime(incident.startedAt);
    this.started.setAttribute('datetime', incident.startedAt);
    this.renderElapsed();
    replace(this.tickets, incident.linkedTicketIds.length
      ? incident.linkedTicketIds.map((t) => h('li', {}, t))
      : h('li.muted', {}, 'none'));
    this.declarer.textContent = personName(incident.creator);
    this.renderRoles();
    this.renderTransitions();
    if (document.activeElement !== this.severity) this.severity.value = incident.severity;
    replace(this.postmortemLink, h('a', { href: `/desk/postmortems/${incident.id}` },
      incident.postmortem ? 'Open the postmortem' : 'Write the postmortem'));
    return true;
  }

  build() {
    this.title = h('h2#detail-title', { id: 'detail-title' });
    this.badges = h('span.badges');
    this.started = h('time');
    this.elapsed = h('span.elapsed');
    this.tickets = h('ul.tickets', { 'aria-label': 'Linked tickets' });
    this.declarer = h('span.declarer');
    this.roles = h('ul.roles', { id: 'roles', 'aria-labelledby': 'roles-title' });
    this.note = h('input#transition-note', { id: 'transition-note', autocomplete: 'off', maxlength: 65536 });
    this.noteNeeded = h('span.hint', {}, '');
    this.noteField = h('div.field', {},
      h('label', { for: 'transition-note' }, 'Note for the status change ', this.noteNeeded),
      this.note);
    this.buttons = h('div.transition-buttons', { role: 'group', 'aria-label': 'Change the status' });
    this.needsPostmortem = h('p.hint', { hidden: true });
    this.error = h('div.error-box', { role: 'alert', hidden: true });
    this.severity = h('select#severity-select', { id: 'severity-select' },
      SEVERITIES.map((sev) => h('option', { value: sev }, sev)));
    this.postmortemLink = h('p.postmortem-link');
    this.hideAuto = h('input#hide-auto', {
      id: 'hide-auto', type: 'checkbox',
      onchange: () => this.events.classList.toggle('hide-auto', this.hideAuto.checked),
    });
    this.events = h('ol.events', { 'aria-labelledby': 'timeline-title' });
    this.noteText = h('textarea#note', {
      id: 'note', rows: 3, required: true,
      onkeydown: (event) => {
        if (event.key === 'Enter' && (event.ctrlKey || event.metaKey)) {
          event.preventDefault();
          this.noteForm.requestSubmit();
        }
      },
    });
    this.noteForm = h('form.note-form', { onsubmit: (event) => { event.preventDefault(); this.addNote(); } },
      h('label', { for: 'note' }, 'Add a note to the timeline'),
      this.noteText,
      h('div.actions', {}, h('button.primary', { type: 'submit' }, 'Add note'), h('span.hint', {}, 'Ctrl + Enter')));

    replace(this.root,
      h('a.back', { href: `/desk/incidents${this.list.queryString}` }, '← All incidents'),
      h('header.detail-head', {}, this.title, this.badges),
      h('dl.facts', {},
        h('div', {}, h('dt', {}, 'Started'), h('dd', {}, this.started)),
        h('div', {}, h('dt', {}, 'Elapsed'), h('dd', {}, this.elapsed)),
        h('div', {}, h('dt', {}, 'Tickets'), h('dd', {}, this.tickets)),
        h('div', {}, h('dt', {}, 'Declared by'), h('dd', {}, this.declarer))),
      h('section.roles-panel', { 'aria-labelledby': 'roles-title' },
        h('h3#roles-title', { id: 'roles-title' }, 'Roles'),
        this.roles),
      h('section.controls', { 'aria-label': 'Workflow' },
        this.noteField,
        this.buttons,
        this.needsPostmortem,
        h('div.field.inline', {},
          h('label', { for: 'severity-select' }, 'Severity'),
          this.severity,
          h('button', { type: 'button', onclick: () => this.changeSeverity() }, 'Change severity')),
        this.postmortemLink,
        this.error),
      h('section.timeline', { 'aria-labelledby': 'timeline-title' },
        h('div.timeline-head', {},
          h('h3#timeline-title', { id: 'timeline-title' }, 'Timeline'),
          h('div.check', {}, this.hideAuto, h('label', { for: 'hide-auto' }, 'Hide automatic events'))),
        this.events,
        this.noteForm));
    this.unsubscribe = live.subscribe(TIMELINE, () => ({ id: this.id, after: this.lastSequence }), {
      next: (payload) => {
        if (payload.errors && payload.errors.length) {
          this.showError(payload.errors[0].message);
          return;
        }
        const event = payload.data && payload.data.incidentEvents;
        if (event) this.addEvent(event);
      },
      error: (e) => this.showError(describe(e)),
    });
  }

  addEvent(event) {
    // Replay after a reconnect starts after the last sequence seen: nothing is shown twice.
    if (event.sequence <= this.lastSequence) return;
    this.lastSequence = event.sequence;
    const automatic = AUTOMATIC.has(event.eventType);
    this.events.append(h('li', { class: automatic ? 'auto' : null, dataset: { sequence: event.sequence } },
      h('div.event-meta', {},
        h('time', { datetime: event.createdAt, title: formatDateTime(event.createdAt) }, formatTime(event.createdAt)),
        h('span.event-type', {}, event.eventType.replace(/_/g, ' ')),
        h('span.event-author', {}, personName(event.author))),
      h('p.event-content', {}, event.content || '')));
  }

  /** One row per role: who holds it, and the buttons to change that. */
  renderRoles() {
    const held = new Map(this.incident.roles.map((r) => [r.role, r.person]));
    // A closed incident's roles are final, as the server says.
    const { editable } = this.incident;
    if (!editable) this.picker = null;
    const open = this.picker && this.picker.role;
    replace(this.roles, ROLES.map(([role, label]) => {
      const person = held.get(role);
      return h('li.role', { dataset: { role } },
        h('span.role-name', {}, label),
        h('span.role-holder', {}, person ? personName(person) : 'nobody'),
        editable ? h('button.quiet', {
          type: 'button',
          'aria-expanded': String(open === role),
          onclick: () => this.openPicker(role, label),
        }, person ? 'Change' : 'Assign') : null,
        editable && person ? h('button.quiet', { type: 'button', onclick: () => this.unassign(role, label) }, 'Unassign') : null,
        open === role ? this.picker.root : null);
    }));
  }

  /** The people picker: a search over the organization's directory, answered by the server. */
  openPicker(role, label) {
    if (this.picker && this.picker.role === role) {
      this.picker = null;
      this.renderRoles();
      return;
    }
    const input = h('input#people-search', {
      id: 'people-search', type: 'search', autocomplete: 'off', placeholder: 'Search people',
      'aria-label': `Search people for ${label.toLowerCase()}`,
      oninput: () => {
        clearTimeout(this.pickerTimer);
        this.pickerTimer = setTimeout(() => this.searchPeople(), 200);
      },
      onkeydown: (event) => {
        if (event.key === 'Escape') { event.preventDefault(); this.picker = null; this.renderRoles(); }
      },
    });
    const results = h('ul.people-results', { id: 'people-results', 'aria-label': 'People' });
    this.picker = { role, label, input, results, root: h('div.picker', {}, input, results) };
    this.renderRoles();
    input.focus();
    this.searchPeople();
  }

  async searchPeople() {
    const picker = this.picker;
    if (!picker) return;
    const search = picker.input.value.trim();
    try {
      const data = await gql(PEOPLE, { search: search || null });
      if (picker !== this.picker) return;
      const people = data.people.nodes;
      replace(picker.results, people.length
        ? people.map((person) => h('li', {},
          h('button.person', { type: 'button', dataset: { id: person.id }, onclick: () => this.assign(picker.role, picker.label, person) },
            h('span.person-name', {}, personName(person)),
            person.email && person.name ? h('span.muted', {}, ` ${person.email}`) : null)))
        : h('li.muted', {}, 'Nobody matches.'));
    } catch (e) {
      replace(picker.results, h('li.error-box', { role: 'alert' }, describe(e)));
    }
  }

  async assign(role, label, person) {
    try {
      const data = await gql(
        `mutation($id: UUID!, $role: IncidentRole!, $person: UUID!) { assignIncidentRole(incidentId: $id, role: $role, personId: $person) { ${FIELDS} } }`,
        { id: this.id, role, person: person.id },
      );
      this.picker = null;
      this.show(data.assignIncidentRole);
      toast(`${personName(person)} is now ${label.toLowerCase()}.`);
    } catch (e) {
      this.showError(describe(e));
    }
  }

  async unassign(role, label) {
    try {
      const data = await gql(
        `mutation($id: UUID!, $role: IncidentRole!) { unassignIncidentRole(incidentId: $id, role: $role) { ${FIELDS} } }`,
        { id: this.id, role },
      );
      this.show(data.unassignIncidentRole);
      toast(`Nobody is ${label.toLowerCase()} now.`);
    } catch (e) {
      this.showError(describe(e));
    }
  }

  renderElapsed() {
    if (!this.incident || !this.elapsed) return;
    const start = new Date(this.incident.startedAt).getTime();
    if (this.incident.resolvedAt) {
      this.elapsed.textContent = `resolved after ${formatDuration((new Date(this.incident.resolvedAt).getTime() - start) / 1000)}`;
    } else {
      this.elapsed.textContent = `${formatDuration((Date.now() - start) / 1000)} so far`;
    }
  }

  renderTransitions() {
    const { status, transitions, closeBlocker } = this.incident;
    replace(this.buttons, transitions.map(({ to, needsNote }) => h(`button.transition.to-${to.toLowerCase()}`, {
      type: 'button',
      dataset: { to, needsNote: String(needsNote) },
      onclick: () => this.transition(to, needsNote),
    }, TRANSITION_WORDS[to](status))));
    // A closed incident is final: no note to write, no button to press.
    this.noteField.hidden = transitions.length === 0;
    const needing = transitions.filter((t) => t.needsNote).map((t) => TRANSITION_WORDS[t.to](status).toLowerCase());
    this.noteNeeded.textContent = needing.length ? `(needed to ${needing.join(' or ')})` : '';
    this.needsPostmortem.hidden = !closeBlocker;
    if (closeBlocker) {
      replace(this.needsPostmortem, `${closeBlocker.message}. `,
        h('a', { href: `/desk/postmortems/${this.id}` }, 'Write the postmortem'));
    }
  }

  showError(message, link) {
    this.error.hidden = false;
    replace(this.error, message, link ? [' ', link] : null);
  }

  async transition(to, needsNote) {
    const note = this.note.value.trim();
    if (needsNote && !note) {
      this.showError('This change needs a note: say why.');
      this.note.focus();
      return;
    }
    this.error.hidden = true;
    for (const b of this.buttons.querySelectorAll('button')) b.disabled = true;
    try {
      const data = await gql(
        `mutation($id: UUID!, $to: IncidentStatus!, $note: String) { transitionIncident(id: $id, to: $to, note: $note) { ${FIELDS} } }`,
        { id: this.id, to, note: note || null },
      );
      this.note.value = '';
      this.show(data.transitionIncident);
      toast(`Now ${STATUS_WORDS[to].toLowerCase()}.`);
    } catch (e) {
      if (e.code === 'POSTMORTEM_REQUIRED') {
        this.showError(`${e.message}.`, h('a', { href: `/desk/postmortems/${this.id}` }, 'Write the postmortem'));
      } else {
        this.showError(describe(e));
      }
      for (const b of this.buttons.querySelectorAll('button')) b.disabled = false;
    }
  }

  async changeSeverity() {
    const severity = this.severity.value;
    if (severity === this.incident.severity) return;
    this.error.hidden = true;
    try {
      const data = await gql(
        `mutation($id: UUID!, $input: UpdateIncidentInput!) { updateIncident(id: $id, input: $input) { ${FIELDS} } }`,
        { id: this.id, input: { severity } },
      );
      this.show(data.updateIncident);
      toast(`Severity is now ${severity}.`);
    } catch (e) {
      this.showError(describe(e));
    }
  }

  async addNote() {
    const content = this.noteText.value;
    if (!content.trim()) {
      this.noteText.focus();
      return;
    }
    const button = this.noteForm.querySelector('button');
    button.disabled = true;
    try {
      await gql(
        'mutation($id: UUID!, $input: AddIncidentEventInput!) { addIncidentEvent(incidentId: $id, input: $input) { sequence } }',
        { id: this.id, input: { id: crypto.randomUUID(), content } },
      );
      this.noteText.value = '';
      this.error.hidden = true;
    } catch (e) {
      this.showError(describe(e));
    } finally {
      button.disabled = false;
    }
  }

  unmount() {
    clearInterval(this.tick);
    clearTimeout(this.pickerTimer);
    if (this.unsubscribe) this.unsubscribe();
  }
}
