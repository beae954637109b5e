// /desk/postmortems: the list, the incidents still waiting for one, and the editor, which
// notices when someone else saves the same postmortem instead of silently overwriting it.

import { h, replace, ago, formatTime, personName, severityBadge, statusBadge, toast } from './dom.js';
import { gql, live, on, describe } from './gql.js';

const LIST = `{
  postmortems(first: 100) {
    totalCount
    nodes { id incidentId updatedAt actionItems { done } incident { id title severity status } }
  }
  waiting: incidents(filter: { awaitingPostmortem: true }, first: 100) {
    nodes { id title severity closeBlocker { severity } }
  }
}`;

const TEXT_FIELDS = [
  ['impactSummary', 'Impact summary', 'Who was affected, how, and for how long.'],
  ['rootCause', 'Root cause', null],
  ['timeline', 'Timeline', 'The key moments, in order.'],
  ['whatWentWell', 'What went well', null],
  ['whatWentWrong', 'What went wrong', null],
  ['publicSummary', 'Public summary', 'Safe to share with customers.'],
  ['internalNotes', 'Internal notes', null],
];

const PM_FIELDS = `id updatedAt author { name email } ${TEXT_FIELDS.map(([f]) => f).join(' ')} actionItems { title owner dueDate done ticketId }`;

const ONE = `query($id: UUID!) { incident(id: $id) { id title severity status postmortem { ${PM_FIELDS} } } }`;

const CHANGES = 'subscription { incidentChanged { kind incident { id postmortem { id updatedAt } } } }';

export function mount(main, params) {
  return new PostmortemsView(main, params);
}

class PostmortemsView {
  constructor(main, params) {
    this.listBody = h('div.pm-list-body', {}, h('p.muted', {}, 'Loading…'));
    this.editorPane = h('section.pm-editor-pane', { 'aria-label': 'Postmortem editor' });
    this.layout = h('div.pm-layout', {},
      h('section.pm-list-pane', { 'aria-labelledby': 'pm-title' },
        h('h1#pm-title', { id: 'pm-title' }, 'Postmortems'),
        this.listBody),
      this.editorPane);
    main.append(this.layout);
    this.editor = null;
    this.cleanup = [
      live.subscribe(CHANGES, () => ({}), { next: (payload) => this.onChange(payload) }),
      on('reconnected', () => { this.loadList(); if (this.editor) this.editor.checkRemote(); }),
    ];
    this.loadList();
    this.update(params);
  }

  update(params) {
    if (this.editor && this.editor.incidentId === params.id) return;
    if (this.editor) this.editor.unmount();
    this.editor = null;
    this.layout.classList.toggle('has-detail', Boolean(params.id));
    if (params.id) {
      this.editor = new Editor(this.editorPane, params.id, () => this.loadList());
    } else {
      replace(this.editorPane, h('div.placeholder', {}, h('p', {}, 'Choose a postmortem to read or edit it.')));
    }
  }

  onChange(payload) {
    const change = payload && payload.data && payload.data.incidentChanged;
    if (!change) return;
    // A resolution or a severity change can add to the waiting list; a postmortem takes away.
    clearTimeout(this.listTimer);
    this.listTimer = setTimeout(() => this.loadList(), 300);
    if (change.kind !== 'POSTMORTEM_UPDATED') return;
    if (this.editor && this.editor.incidentId === change.incident.id) {
      this.editor.remoteSaved(change.incident.postmortem);
    }
  }

  async loadList() {
    try {
      const data = await gql(LIST);
      this.renderList(data);
    } catch (e) {
      replace(this.listBody, h('p.error-box', { role: 'alert' }, describe(e)));
    }
  }

  renderList(data) {
    const rows = data.postmortems.nodes.map((pm) => {
      const done = pm.actionItems.filter((i) => i.done).length;
      return h('tr', {},
        h('td', {}, h('a', { href: `/desk/postmortems/${pm.incidentId}` }, pm.incident.title)),
        h('td', {}, severityBadge(pm.incident.severity)),
        h('td.num', { 'aria-label': `${done} of ${pm.actionItems.length} action items done` }, `${done} / ${pm.actionItems.length}`),
        h('td', {}, h('time', { datetime: pm.updatedAt }, ago(pm.updatedAt))));
    });
    const waiting = data.waiting.nodes;
    replace(this.listBody,
      rows.length
        ? h('table.pm-table', {},
          h('caption.visually-hidden', {}, 'Postmortems, newest first'),
          h('thead', {}, h('tr', {},
            h('th', { scope: 'col' }, 'Incident'),
            h('th', { scope: 'col' }, 'Severity'),
            h('th', { scope: 'col' }, 'Action items done'),
            h('th', { scope: 'col' }, 'Updated'))),
          h('tbody', {}, rows))
        : h('p.muted', {}, 'No postmortems yet.'),
      waiting.length
        ? h('section.waiting', { 'aria-labelledby': 'waiting-title' },
          h('h2#waiting-title', { id: 'waiting-title' }, 'Waiting for a postmortem'),
          h('ul', { id: 'waiting-list' }, waiting.map((i) => h('li', { dataset: { id: i.id } },
            severityBadge(i.closeBlocker ? i.closeBlocker.severity : i.severity), ' ',
            h('a', { href: `/desk/postmortems/${i.id}` }, i.title)))))
        : null);
  }

  unmount() {
    for (const stop of this.cleanup) stop();
    clearTimeout(this.listTimer);
    if (this.editor) this.editor.unmount();
    this.layout.remove();
  }
}

let itemCounter = 0;

class Editor {
  constructor(pane, incidentId, saved) {
    this.pane = pane;
    this.incidentId = incidentId;
    this.onSaved = saved;
    this.base = null; // the updatedAt this editor's content is based on (null: none exists)
    this.dirty = false;
    this.saving = false;
    replace(pane, h('p.muted', {}, 'Loading…'));
    this.load();
  }

  async load() {
    try {
      const data = await gql(ONE, { id: this.incidentId });
      this.incident = data.incident;
      this.build(data.incident.postmortem);
    } catch (e) {
      replace(this.pane,
        h('a.back', { href: '/desk/postmortems' }, '← All postmortems'),
        h('h2', {}, 'Postmortem not available'),
        h('p.error-box', { role: 'alert' }, describe(e)));
    }
  }

  build(pm) {
    this.base = pm ? pm.updatedAt : null;
    this.dirty = false;
    const incident = this.incident;
    this.fields = {};
    const textareas = TEXT_FIELDS.map(([name, label, hint]) => {
      const id = `pm-${name}`;
      const area = h('textarea', {
        id, name, rows: name === 'timeline' ? 5 : 3,
        'aria-describedby': hint ? `${id}-hint` : null,
        value: pm ? pm[name] || '' : '',
      });
      this.fields[name] = area;
      return h('div.field', {},
        h('label', { for: id }, label),
        hint ? h('p.hint', { id: `${id}-hint` }, hint) : null,
        area);
    });
    this.items = h('ol.action-items', { 'aria-label': 'Action items' });
    for (const item of pm ? pm.actionItems : []) this.addItem(item);
    this.conflict = h('div.conflict', { role: 'alert', hidden: true });
    this.error = h('p.error-box', { role: 'alert', hidden: true });
    this.status = h('p.save-status', { role: 'status', 'aria-live': 'polite' },
      pm ? `Last saved ${ago(pm.updatedAt)}.` : 'Not written yet.');
    this.submit = h('button.primary', { type: 'submit' }, pm ? 'Save postmortem' : 'Create postmortem');
    this.form = h('form.pm-editor', {
      oninput: () => { this.dirty = true; },
      onsubmit: (event) => { event.preventDefault(); this.save(); },
    },
    h('a.back', { href: '/desk/postmortems' }, '← All postmortems'),
    h('h2#pm-editor-title', { id: 'pm-editor-title' }, `Postmortem: ${incident.title}`),
    h('p.pm-incident', {}, severityBadge(incident.severity), ' ', statusBadge(incident.status), ' ',
      h('a', { href: `/desk/incidents/${incident.id}` }, 'Open the incident'),
      pm ? h('span.pm-author', {}, ` · written by ${personName(pm.author)}`) : null),
    this.conflict,
    textareas,
    h('fieldset.items', {},
      h('legend', {}, 'Action items'),
      this.items,
      h('button', { type: 'button', onclick: () => { this.addItem(null, true); this.dirty = true; } }, 'Add action item')),
    this.error,
    h('div.actions.save-bar', {}, this.submit, this.status));
    replace(this.pane, this.form);
  }

  addItem(item, focus = false) {
    const n = ++itemCounter;
    const field = (key, label, input) => h(`div.field.item-${key}`, {}, h('label', { for: `item-${n}-${key}` }, label), input);
    const title = h('input', { id: `item-${n}-title`, required: true, maxlength: 500, value: item ? item.title : '', dataset: { key: 'title' } });
    const owner = h('input', { id: `item-${n}-owner`, maxlength: 200, value: item ? item.owner || '' : '', dataset: { key: 'owner' } });
    const due = h('input', { id: `item-${n}-due`, type: 'date', value: item ? item.dueDate || '' : '', dataset: { key: 'dueDate' } });
    const done = h('input', { id: `item-${n}-done`, type: 'checkbox', checked: item ? item.done : false, dataset: { key: 'done' } });
    const ticket = h('input', { id: `item-${n}-ticket`, maxlength: 100, value: item ? item.ticketId || '' : '', dataset: { key: 'ticketId' } });
    const li = h('li.item', {},
      field('title', 'Action', title),
      field('owner', 'Owner', owner),
      field('due', 'Due', due),
      h('div.field.item-done.check', {}, done, h('label', { for: `item-${n}-done` }, 'Done')),
      field('ticket', 'Ticket', ticket),
      h('button.remove', {
        type: 'button',
        'aria-label': `Remove action item ${item ? item.title : ''}`.trim(),
        onclick: () => { li.remove(); this.dirty = true; },
      }, 'Remove'));
    this.items.append(li);
    if (focus) title.focus();
  }

  input() {
    const input = {};
    for (const [name, area] of Object.entries(this.fields)) input[name] = area.value;
    input.actionItems = [...this.items.querySelectorAll('li.item')].map((li) => {
      const get = (key) => li.querySelector(`[data-key="${key}"]`);
      return {
        title: get('title').value.trim(),
        owner: get('owner').value.trim() || null,
        dueDate: get('dueDate').value || null,
        done: get('done').checked,
        ticketId: get('ticketId').value.trim() || null,
      };
    });
    return input;
  }

  /** The server's copy changed (seen on the feed): ours is stale unless it was our own save. */
  remoteSaved(remote) {
    if (this.saving || !remote || remote.updatedAt === this.base) return;
    if (!this.dirty) {
      this.reloadFromServer('Someone else saved this postmortem; you are seeing their version.');
      return;
    }
    this.showConflict(remote.updatedAt);
  }

  /** After a reconnect: did it change while we were away? */
  async checkRemote() {
    try {
      const data = await gql('query($id: UUID!) { incident(id: $id) { postmortem { id updatedAt } } }', { id: this.incidentId });
      this.remoteSaved(data.incident.postmortem);
    } catch {
      // The next save checks again.
    }
  }

  showConflict(at) {
    this.remoteAt = at;
    this.conflict.hidden = false;
    replace(this.conflict,
      h('p', {}, h('strong', {}, 'Someone else saved this postmortem'), ` at ${formatTime(at)}, after you started editing. `,
        'Your changes are still here and have not been saved.'),
      h('div.actions', {},
        h('button', { type: 'button', onclick: () => this.reloadFromServer('Loaded their version; your changes were discarded.') }, 'Load their version'),
        h('button.danger', { type: 'button', onclick: () => this.save({ overwrite: true }) }, 'Save mine over theirs')));
  }

  async reloadFromServer(message) {
    const data = await gql(ONE, { id: this.incidentId });
    this.incident = data.incident;
    this.build(data.incident.postmortem);
    toast(message);
  }

  async save({ overwrite = false } = {}) {
    if (!this.form.reportValidity()) return;
    this.error.hidden = true;
    this.saving = true;
    this.submit.disabled = true;
    try {
      // Compare before writing, so a change the feed has not delivered yet is not overwritten.
      const current = await gql('query($id: UUID!) { incident(id: $id) { postmortem { id updatedAt } } }', { id: this.incidentId });
      const remote = current.incident.postmortem;
      if (!overwrite && ((remote && remote.updatedAt !== this.base) || (!remote && this.base))) {
        this.showConflict(remote ? remote.updatedAt : new Date().toISOString());
        return;
      }
      const mutation = remote ? 'updatePostmortem' : 'createPostmortem';
      const data = await gql(
        `mutation($id: UUID!, $input: PostmortemInput!) { ${mutation}(incidentId: $id, input: $input) { ${PM_FIELDS} } }`,
        { id: this.incidentId, input: this.input() },
      );
      const pm = data[mutation];
      this.base = pm.updatedAt;
      this.dirty = false;
      this.conflict.hidden = true;
      this.submit.textContent = 'Save postmortem';
      this.status.textContent = `Saved at ${formatTime(pm.updatedAt)}.`;
      toast('Postmortem saved.');
      this.onSaved();
    } catch (e) {
      this.error.hidden = false;
      this.error.textContent = describe(e);
    } finally {
      this.saving = false;
      this.submit.disabled = false;
    }
  }

  unmount() {}
}
