// /desk/settings/webhooks (admins): the organization's endpoints, the secret shown once at
// creation and rotation, and each endpoint's delivery log with its attempts and a resend button.

import { h, replace, formatDateTime, toast } from './dom.js';
import { gql, describe } from './gql.js';

const FIELDS = 'id url description eventTypes format enabled disabledReason createdAt';
const DELIVERIES = `deliveries(first: 20) { nodes { id messageId eventType status createdAt nextAttemptAt
  attempts { at responseStatus durationMs error } } }`;
const LIST = `{ webhookEndpoints { ${FIELDS} ${DELIVERIES} } }`;

export function mount(main) {
  return new WebhooksView(main);
}

class WebhooksView {
  constructor(main) {
    this.secretBox = h('div.wh-secret', { hidden: true, role: 'status' });
    this.error = h('p.error-box', { role: 'alert', hidden: true });
    this.list = h('div.wh-list', {}, h('p.muted', {}, 'Loading…'));
    this.root = h('section.wh-page', { 'aria-labelledby': 'wh-title' },
      h('h1#wh-title', { id: 'wh-title' }, 'Webhooks'),
      h('p.hint', {}, 'incidentd signs every message (Standard Webhooks); each endpoint’s secret is shown once.'),
      this.form(),
      this.secretBox,
      this.error,
      this.list);
    main.append(this.root);
    this.load();
  }

  update() {}

  unmount() {
    this.root.remove();
  }

  form() {
    const url = h('input#wh-url', { id: 'wh-url', name: 'url', type: 'url', required: true, autocomplete: 'off', placeholder: 'https://hooks.example.com/incidentd' });
    const description = h('input#wh-description', { id: 'wh-description', name: 'description', autocomplete: 'off' });
    const types = h('input#wh-types', { id: 'wh-types', name: 'types', autocomplete: 'off', placeholder: 'incident.created, incident.status_changed' });
    const format = h('select#wh-format', { id: 'wh-format', name: 'format' },
      h('option', { value: 'STANDARD' }, 'Standard Webhooks JSON'),
      h('option', { value: 'SLACK' }, 'Slack incoming webhook'),
      h('option', { value: 'TEAMS' }, 'Microsoft Teams workflow'));
    return h('form.wh-form', {
      onsubmit: async (event) => {
        event.preventDefault();
        const eventTypes = types.value.split(',').map((t) => t.trim()).filter(Boolean);
        const input = { url: url.value.trim(), description: description.value || null, eventTypes, format: format.value };
        const created = await this.run(() => gql(
          'mutation($input: WebhookEndpointInput!) { createWebhookEndpoint(input: $input) { secret endpoint { id } } }',
          { input },
        ));
        if (!created) return;
        event.target.reset();
        this.showSecret('The new endpoint’s signing secret', created.createWebhookEndpoint.secret);
        this.load();
      },
    },
    h('label', { for: 'wh-url' }, 'Endpoint URL'), url,
    h('label', { for: 'wh-description' }, 'Description ', h('span.hint', {}, '(optional)')), description,
    h('label', { for: 'wh-types' }, 'Event types ', h('span.hint', {}, '(comma-separated; empty: every type)')), types,
    h('label', { for: 'wh-format' }, 'Format'), format,
    h('div.actions', {}, h('button.primary', { type: 'submit' }, 'Add endpoint')));
  }

  showSecret(what, secret) {
    replace(this.secretBox,
      h('p', {}, `${what} (shown this once; keep it where your receiver can read it):`),
      h('code.wh-secret-value', {}, secret));
    this.secretBox.hidden = false;
  }

  /** Runs a call; on failure shows why and answers null. */
  async run(call) {
    this.error.hidden = true;
    try {
      return await call();
    } catch (e) {
      this.error.textContent = describe(e);
      this.error.hidden = false;
      return null;
    }
  }

  async load() {
    const data = await this.run(() => gql(LIST));
    if (!data) {
      replace(this.list);
      return;
    }
    const endpoints = data.webhookEndpoints;
    if (!endpoints.length) {
      replace(this.list, h('p.muted', {}, 'No endpoints yet.'));
      return;
    }
    replace(this.list, ...endpoints.map((e) => this.endpoint(e)));
  }

  endpoint(e) {
    const act = (label, call, done) => h('button', {
      type: 'button',
      onclick: async () => {
        const result = await this.run(call);
        if (result === null) return;
        if (done) done(result);
        this.load();
      },
    }, label);
    const id = { id: e.id };
    return h('section.wh-endpoint', { dataset: { id: e.id }, 'aria-label': e.url },
      h('h2.wh-url', {}, e.url),
      e.description ? h('p.wh-description', {}, e.description) : null,
      h('p.hint', {},
        `${e.format} · ${e.eventTypes.length ? e.eventTypes.join(', ') : 'every event type'} · added ${formatDateTime(e.createdAt)}`),
      h('p', { class: e.enabled ? 'wh-state on' : 'wh-state off' },
        e.enabled ? 'Enabled' : `Disabled${e.disabledReason ? `: ${e.disabledReason}` : ''}`),
      h('div.actions', {},
        act('Send test message', () => gql('mutation($id: UUID!) { sendTestWebhook(id: $id) { id } }', id),
          () => toast('Test message queued.')),
        act('Rotate secret', () => gql('mutation($id: UUID!) { rotateWebhookSecret(id: $id) { secret } }', id),
          (r) => this.showSecret('The new secret (the old one keeps signing for a day)', r.rotateWebhookSecret.secret)),
        act(e.enabled ? 'Disable' : 'Enable',
          () => gql('mutation($id: UUID!, $on: Boolean!) { updateWebhookEndpoint(id: $id, input: { enabled: $on }) { id } }', { id: e.id, on: !e.enabled })),
        act('Reload log', async () => ({})),
        act('Delete', async () => {
          if (!window.confirm(`Delete the endpoint ${e.url} and its delivery log?`)) return null;
          return gql('mutation($id: UUID!) { deleteWebhookEndpoint(id: $id) }', id);
        })),
      this.log(e.deliveries.nodes));
  }

  log(deliveries) {
    if (!deliveries.length) return h('p.muted', {}, 'No deliveries yet.');
    const rows = deliveries.map((d) => {
      const last = d.attempts[d.attempts.length - 1];
      const outcome = last
        ? `${last.responseStatus ?? '—'}${last.error ? ` ${last.error}` : ''} (${last.durationMs} ms)`
        : '—';
      return h('tr.wh-delivery', { dataset: { id: d.id, status: d.status } },
        h('td', {}, formatDateTime(d.createdAt)),
        h('td', {}, d.eventType),
        h('td.wh-status', {}, d.status),
        h('td.num', {}, String(d.attempts.length)),
        h('td', {}, outcome),
        h('td', {}, h('button.wh-replay', {
          type: 'button',
          'aria-label': `Send ${d.messageId} again`,
          onclick: async () => {
            const done = await this.run(() => gql('mutation($id: UUID!) { replayWebhookMessage(deliveryId: $id) { id } }', { id: d.id }));
            if (done) {
              toast('Queued again.');
              this.load();
            }
          },
        }, 'Send again')));
    });
    return h('table.wh-log', {},
      h('caption', {}, 'Deliveries, newest first'),
      h('thead', {}, h('tr', {}, ...['Created', 'Event', 'Status', 'Attempts', 'Last attempt', ''].map((t) => h('th', { scope: 'col' }, t)))),
      h('tbody', {}, ...rows));
  }
}
