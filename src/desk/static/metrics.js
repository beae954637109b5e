// The metrics panel: `incidentMetrics` over the last 30 days, and its weekly series drawn as a
// small stacked SVG bar chart (one colour per severity, with a legend and a text alternative).

import { h, s, replace, formatDuration, formatDay, SEVERITIES } from './dom.js';
import { gql, describe } from './gql.js';

const QUERY = `query($from: DateTime!, $to: DateTime!) {
  incidentMetrics(from: $from, to: $to) {
    total openNow reopenCount actionItemsOpen actionItemsOverdue
    bySeverity { severity count }
    timeToMitigate { count meanSeconds p50Seconds p90Seconds }
    timeToResolve { count meanSeconds p50Seconds p90Seconds }
    weekly { weekStart total bySeverity { severity count } }
  }
}`;

const DAY = 86400 * 1000;

export function mountMetrics(container) {
  const body = h('div.metrics-body', {}, h('p.muted', {}, 'Loading metrics…'));
  const section = h('section.metrics-panel', { 'aria-labelledby': 'metrics-title' },
    h('h2#metrics-title', { id: 'metrics-title' }, 'Last 30 days'),
    body);
  container.append(section);
  let timer = null;
  let generation = 0;

  async function refresh() {
    const mine = ++generation;
    const now = Date.now();
    try {
      const data = await gql(QUERY, {
        from: new Date(now - 30 * DAY).toISOString(),
        // The window is [from, to): one minute of slack keeps an incident declared now inside.
        to: new Date(now + 60 * 1000).toISOString(),
      });
      if (mine === generation) render(body, data.incidentMetrics);
    } catch (e) {
      if (mine === generation) replace(body, h('p.error-box', { role: 'alert' }, describe(e)));
    }
  }

  return {
    refresh,
    /** Many changes in a burst cost one refetch. */
    soon() {
      clearTimeout(timer);
      timer = setTimeout(refresh, 700);
    },
    unmount() {
      clearTimeout(timer);
      section.remove();
    },
  };
}

function stat(id, label, value, detail) {
  return h('div.stat', {},
    h('dt', {}, label),
    h('dd', { id }, h('span.stat-value', {}, value), detail ? h('span.stat-detail', {}, detail) : null));
}

function durations(d) {
  if (!d.count) return ['—', 'none yet'];
  return [formatDuration(d.meanSeconds), `p50 ${formatDuration(d.p50Seconds)} · p90 ${formatDuration(d.p90Seconds)}`];
}

function render(body, m) {
  const [ttmMean, ttmDetail] = durations(m.timeToMitigate);
  const [ttrMean, ttrDetail] = durations(m.timeToResolve);
  const bySeverity = m.bySeverity.map((x) => `${x.severity} ${x.count}`).join(' · ');
  replace(body,
    h('dl.stats', {},
      stat('metric-total', 'Declared', String(m.total), bySeverity),
      stat('metric-open-now', 'Open now', String(m.openNow)),
      stat('metric-reopened', 'Reopenings', String(m.reopenCount)),
      stat('metric-ttm', 'Time to mitigate (mean)', ttmMean, ttmDetail),
      stat('metric-ttr', 'Time to resolve (mean)', ttrMean, ttrDetail),
      stat('metric-action-items', 'Action items open', String(m.actionItemsOpen),
        m.actionItemsOverdue ? `${m.actionItemsOverdue} overdue` : 'none overdue')),
    chart(m.weekly));
}

/** Stacked bars, one per week; SEV1 at the bottom. */
function chart(weekly) {
  const width = 320;
  const height = 120;
  const top = 16;
  const bottom = 22;
  const max = Math.max(1, ...weekly.map((w) => w.total));
  const slot = width / Math.max(1, weekly.length);
  const barWidth = Math.min(36, slot * 0.6);
  const scale = (height - top - bottom) / max;
  const bars = weekly.map((week, i) => {
    const x = i * slot + (slot - barWidth) / 2;
    let y = height - bottom;
    const parts = week.bySeverity.filter((p) => p.count > 0).map((p) => {
      const hgt = p.count * scale;
      y -= hgt;
      return s('rect', { x: x.toFixed(1), y: y.toFixed(1), width: barWidth.toFixed(1), height: hgt.toFixed(1), class: `bar-${p.severity.toLowerCase()}` });
    });
    const label = `Week of ${formatDay(week.weekStart)}: ${week.total} incident${week.total === 1 ? '' : 's'}`
      + (week.total ? ` (${week.bySeverity.filter((p) => p.count).map((p) => `${p.severity} ${p.count}`).join(', ')})` : '');
    return s('g', { class: 'week' },
      s('title', {}, label),
      ...parts,
      s('text', { x: (i * slot + slot / 2).toFixed(1), y: height - 6, 'text-anchor': 'middle', class: 'axis' }, formatDay(week.weekStart)),
      week.total ? s('text', { x: (i * slot + slot / 2).toFixed(1), y: (y - 2).toFixed(1), 'text-anchor': 'middle', class: 'count' }, String(week.total)) : null);
  });
  const description = weekly.map((w) => `${formatDay(w.weekStart)}: ${w.total}`).join('; ');
  const svg = s('svg', {
    viewBox: `0 0 ${width} ${height}`, role: 'img', 'aria-labelledby': 'chart-title chart-desc', class: 'chart',
  },
  s('title', { id: 'chart-title' }, 'Incidents declared per week, by severity'),
  s('desc', { id: 'chart-desc' }, description),
  s('line', { x1: 0, x2: width, y1: height - bottom, y2: height - bottom, class: 'baseline' }),
  ...bars);
  return h('figure.chart-figure', {},
    svg,
    h('figcaption', {}, 'Declared per week · ',
      SEVERITIES.map((sev) => h('span.legend', {}, h(`span.swatch.bar-${sev.toLowerCase()}`, { 'aria-hidden': 'true' }), sev))));
}
