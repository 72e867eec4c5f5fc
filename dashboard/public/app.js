/* global document, window, fetch, Node, URL, URLSearchParams, location, history, EventSource, setTimeout */
// conveyor's live page: everything arrives over one EventSource (/api/events); nothing here polls.
const $ = (id) => document.getElementById(id);
const SVG = 'http://www.w3.org/2000/svg';
const SERIES = ['waiting', 'active', 'delayed', 'failed', 'cancelled'];
/** Rows shown per table page: a run of 10,000 processes renders 50 rows of each, not 10,000. */
const PAGE_ROWS = 50;

let info = { queue: '?', actions: false, historyMs: 600000 };
let samples = [];
let source;
let current = { runId: null, status: null };
/** Each table's first shown row, and the rows of a later page as last fetched (the stream carries the first page). */
const pages = {
  producers: { offset: 0, fetched: null, loading: false },
  consumers: { offset: 0, fetched: null, loading: false },
};

const time = (ms) => (ms ? new Date(ms).toLocaleTimeString('en-GB', { hour12: false }) : '–');
const ago = (ms, now) => {
  const s = Math.max(0, Math.round((now - ms) / 1000));
  return s < 60 ? `${s} s ago` : `${Math.floor(s / 60)} min ${s % 60} s ago`;
};

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === 'class') node.className = v;
    else if (k.startsWith('data-')) node.setAttribute(k, v);
    else node[k] = v;
  }
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return node;
}

/** Held job ids, shortened: the run id they all start with is left out (the full ids are in the tooltip). */
const shortId = (id, runId) => (id.startsWith(`${runId}+`) ? id.slice(runId.length + 1) : id);

function currentJobs(ids, runId) {
  if (ids.length === 0) return '–';
  const short = ids.map((id) => shortId(id, runId));
  return short.length > 3 ? `${short.slice(0, 3).join(', ')} +${short.length - 3}` : short.join(', ');
}

/** One cancel button per job of the run (a consumer's current jobs, or the run's waiting ones). */
function jobButtons(ids, runId) {
  // Every job id of a run begins with `<run>+`.
  const mine = ids.filter((id) => id.startsWith(`${runId}+`));
  if (mine.length === 0) return currentJobs(ids, runId);
  return el(
    'span',
    { class: 'jobs' },
    ...mine.map((id) => {
      const b = el(
        'button',
        { type: 'button', class: 'danger job', 'data-job': id, title: `Cancel job ${id}` },
        `✕ ${id.slice(runId.length + 1)}`,
      );
      b.addEventListener('click', () =>
        act('cancel-job', { run: runId, job: id }, `Cancel job ${id}? A running handler is aborted.`),
      );
      return b;
    }),
  );
}

const stateBadge = (state) => el('span', { class: `state state-${state}` }, state);

function showError(message) {
  const box = $('error');
  box.hidden = !message;
  box.textContent = message || '';
}

async function act(path, body, question) {
  if (!window.confirm(question)) return;
  try {
    const res = await fetch(`/api/actions/${path}`, {
      method: 'POST',
      credentials: 'same-origin',
      headers: { 'Content-Type': 'application/json', 'X-Conveyor-Action': '1' },
      body: JSON.stringify(body),
    });
    if (!res.ok) {
      const detail = await res.json().catch(() => ({}));
      showError(`Action refused (${res.status}): ${detail.error || res.statusText}`);
    } else showError('');
  } catch (err) {
    showError(`Action failed: ${err.message}`);
  }
}

// ---- depth chart: a hand-drawn SVG, so the page needs nothing from the internet ----
function drawChart() {
  const svg = $('depth-chart');
  // Drawn in screen pixels (viewBox = element size) so the axis text is never stretched.
  const W = Math.max(300, Math.round(svg.clientWidth || 800));
  const H = Math.max(160, Math.round(svg.clientHeight || 220));
  svg.setAttribute('viewBox', `0 0 ${W} ${H}`);
  const L = 40;
  const B = 20;
  const T = 8;
  svg.replaceChildren();
  svg.setAttribute('data-points', String(samples.length));
  if (samples.length === 0) return;
  const t1 = samples[samples.length - 1].t;
  const t0 = Math.min(samples[0].t, t1 - 10000);
  let max = 1;
  for (const s of samples) for (const k of SERIES) max = Math.max(max, s[k] ?? 0);
  // The newest failed and cancelled counts, apart: BullMQ keeps cancelled jobs in its failed set.
  svg.setAttribute('data-failed', String(samples[samples.length - 1].failed));
  svg.setAttribute('data-cancelled', String(samples[samples.length - 1].cancelled ?? 0));
  const step = niceStep(max / 4);
  max = Math.ceil(max / step) * step;
  const x = (t) => L + ((t - t0) / (t1 - t0)) * (W - L - 4);
  const y = (v) => T + (1 - v / max) * (H - T - B);
  const add = (tag, attrs, text) => {
    const n = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs)) n.setAttribute(k, String(v));
    if (text !== undefined) n.textContent = text;
    svg.append(n);
    return n;
  };
  for (let v = 0; v <= max; v += step) {
    add('line', { class: 'grid', x1: L, x2: W, y1: y(v), y2: y(v) });
    add('text', { class: 'axis', x: L - 6, y: y(v) + 4, 'text-anchor': 'end' }, String(v));
  }
  add('text', { class: 'axis', x: L, y: H - 4 }, time(t0));
  add('text', { class: 'axis', x: W - 4, y: H - 4, 'text-anchor': 'end' }, time(t1));
  const drained = (current.drained || []).filter((d) => d >= t0 && d <= t1);
  drained.forEach((d, i) => {
    add('line', { class: 'drain', x1: x(d), x2: x(d), y1: T, y2: H - B });
    // Only the latest is labelled: several close together would overprint each other.
    if (i === drained.length - 1) add('text', { class: 'mark', x: x(d) + 3, y: T + 10 }, 'drained');
  });
  const joinedAt = current.status && current.status.join.joinedAt;
  const j = joinedAt ? Date.parse(joinedAt) : NaN;
  if (j >= t0 && j <= t1) {
    add('line', { class: 'joined-mark', x1: x(j), x2: x(j), y1: T, y2: H - B });
    add(
      'text',
      { class: 'mark', x: x(j) - 3, y: T + 22, 'text-anchor': 'end' },
      `${current.status.runId} joined`,
    );
  }
  // A sharded queue: one thin line per shard's waiting jobs, drawn first so the totals stay on top.
  const shards = samples[samples.length - 1].shards || [];
  $('legend-shards').hidden = shards.length < 2;
  for (let i = 0; i < shards.length && shards.length > 1; i++) {
    const points = samples.filter((s) => s.shards && s.shards[i] !== undefined);
    add('polyline', {
      class: 'shard',
      'data-shard': i,
      points: points.map((s) => `${x(s.t).toFixed(1)},${y(s.shards[i]).toFixed(1)}`).join(' '),
    });
  }
  for (const k of SERIES) {
    add('polyline', {
      class: k,
      points: samples.map((s) => `${x(s.t).toFixed(1)},${y(s[k] ?? 0).toFixed(1)}`).join(' '),
    });
  }
}

function niceStep(raw) {
  if (raw <= 1) return 1;
  const p = 10 ** Math.floor(Math.log10(raw));
  for (const m of [1, 2, 5, 10]) if (raw <= m * p) return m * p;
  return 10 * p;
}

// ---- panels ----
function renderRun(u) {
  const s = u.status;
  $('run-id').textContent = u.runId ? `showing run ${u.runId}` : 'no run yet';
  const join = $('join-state');
  if (!s) {
    join.dataset.state = 'none';
    join.textContent = u.runId ? `run ${u.runId} not found` : `no run on queue ${info.queue} yet`;
    return;
  }
  const j = s.jobs;
  const p = s.producers;
  renderChain(s);
  const cancelled = s.join.cancelledAt ? `cancelled at ${time(Date.parse(s.join.cancelledAt))}` : '';
  if (s.join.state === 'joined' && cancelled) {
    join.dataset.state = 'cancelled';
    join.textContent = `${cancelled}, then joined at ${time(Date.parse(s.join.joinedAt))} (${j.cancelled} jobs cancelled, ${j.unfinished} unfinished)`;
  } else if (s.join.state === 'joined') {
    join.dataset.state = 'joined';
    join.textContent = `joined at ${time(Date.parse(s.join.joinedAt))} (all ${p.expected} producers done, ${j.unfinished} unfinished)`;
    const open = (s.callbacks || []).filter((c) => !['completed', 'failed', 'skipped'].includes(c.state));
    if (open.length) join.textContent += `; callbacks: ${open.map((c) => `${c.name} ${c.state}`).join(', ')}`;
  } else if (s.join.state === 'abandoned') {
    join.dataset.state = 'abandoned';
    join.textContent = `abandoned at ${time(Date.parse(s.join.abandonedAt))}: ${s.join.abandonReason}; it will never join`;
  } else {
    join.dataset.state = cancelled ? 'cancelled' : 'pending';
    const why = {
      'run-not-created': 'no producer has created the run yet (its consumers wait)',
      'producers-missing': `${p.expected - p.registered} of ${p.expected} producers not started yet`,
      'producers-running': `${p.running} of ${p.expected} producers still running`,
      'producers-settling': 'settling what lost or restarted producers had in flight',
      'jobs-unfinished': `all producers finished, ${j.unfinished} jobs unfinished`,
      'join-check': 'everything finished: joins at the next check',
    }[s.join.waitingFor];
    join.textContent = `${cancelled ? `${cancelled}; ` : ''}not joined: ${why || s.join.waitingFor}`;
  }
  renderCancel(s, u.cancelledJobs);
  $('n-produced').textContent = j.produced;
  $('n-completed').textContent = j.completed;
  $('n-failed').textContent = j.failed;
  $('n-unfinished').textContent = j.unfinished;
  $('n-cancelled').textContent = j.cancelled;
  $('n-rate').textContent = u.rate === null ? '–' : u.rate.toFixed(1);
  $('n-eta').textContent =
    s.join.state === 'joined' ? 'done' : u.etaSeconds === null ? '–' : `${Math.ceil(u.etaSeconds)} s`;
  const pct = (n) => (j.produced ? (100 * n) / j.produced : 0);
  $('progress-done').style.width = `${pct(j.completed)}%`;
  $('progress-failed').style.width = `${pct(j.failed)}%`;
  $('progress-cancelled').style.width = `${pct(j.cancelled)}%`;
  $('progress').setAttribute('aria-valuenow', String(Math.round(pct(j.completed + j.failed + j.cancelled))));
  $('progress-text').textContent =
    `${j.completed + j.failed} of ${j.produced} produced jobs finished` +
    (j.cancelled ? `, ${j.cancelled} cancelled` : '') +
    (p.running > 0 ? ' (producers still running, so the total can grow)' : '') +
    (j.removed ? `, ${j.removed} removed by hand` : '');
  $('producers-summary').textContent =
    `${p.registered}/${p.expected} registered: ${p.running} running, ${p.done} done, ${p.lost} lost`;
  $('run-actions').hidden = !info.actions || s.join.state === 'joined';
}

/** The run's cancellation: a banner saying who cancelled it, when and what it did, and the cancelled jobs. */
function renderCancel(s, cancelledJobs) {
  const banner = $('cancel-banner');
  const j = s.jobs;
  banner.hidden = !s.join.cancelledAt;
  if (s.join.cancelledAt) {
    const removed = s.join.cancelRemoved ?? 0;
    banner.textContent =
      `Run cancelled at ${time(Date.parse(s.join.cancelledAt))}` +
      (s.join.cancelledBy ? ` by ${s.join.cancelledBy}` : '') +
      (s.join.cancelReason ? ` (${s.join.cancelReason})` : '') +
      `: it removed ${removed} job${removed === 1 ? '' : 's'} not yet started at once; ` +
      `${j.cancelled} cancelled in all, the others aborted while running or removed once acknowledged.`;
  }
  const list = (cancelledJobs && cancelledJobs.ids) || [];
  // The ids come from the jobs cancelled one by one or removed by the run's cancel; jobs aborted while
  // running are in the run's count only.
  const total = Math.max(j.cancelled, (cancelledJobs && cancelledJobs.total) || 0);
  $('cancelled-jobs').hidden = total === 0;
  $('cancelled-count').textContent = String(total);
  $('cancelled-list').textContent =
    list.map((id) => shortId(id, s.runId)).join(', ') +
    (total > list.length ? ` +${total - list.length} more` : '');
}

/** Chained runs: the run whose join callback started this one, and the one this run's started. */
function renderChain(s) {
  const link = (label, run) =>
    el('a', { href: `?run=${encodeURIComponent(run)}`, className: 'chain-link' }, `${label} ${run}`);
  const parts = [];
  if (s.afterRun) parts.push(link('← after', s.afterRun));
  if (s.nextRun) parts.push(link('next →', s.nextRun));
  $('run-chain').replaceChildren(...parts.flatMap((a, i) => (i ? [' · ', a] : [a])));
}

function renderDrained(u) {
  const list = u.drained || [];
  $('drained-list').textContent = list.length ? list.slice(-8).map(time).join(', ') : 'not yet';
}

/** One queue, many runs: the jobs of other runs this consumer finished (it takes whatever the queue holds). */
function otherRuns(runs, runId) {
  const others = Object.entries(runs || {}).filter(([run]) => run !== runId);
  return others.length ? others.map(([run, n]) => `${run}: ${n}`).join(', ') : '–';
}

/** The rows a table shows: the stream's first page, or the later page last fetched for it. */
function shownRows(table, first) {
  const p = pages[table];
  if (p.offset === 0 || !first) return first ? first.rows : [];
  return p.fetched && p.fetched.offset === p.offset ? p.fetched.rows : [];
}

/** Fetches the page a table is on (one request at a time), then renders it from the newest update. */
async function fetchPage(table) {
  const p = pages[table];
  const runId = current.status && current.status.runId;
  if (p.loading || p.offset === 0 || !runId) return;
  p.loading = true;
  const asked = p.offset;
  try {
    const q = new URLSearchParams({ run: runId, table, offset: String(p.offset), limit: String(PAGE_ROWS) });
    const res = await fetch(`/api/rows?${q}`, { credentials: 'same-origin' });
    if (res.ok) p.fetched = await res.json();
  } catch {
    // the connection state says so; the next update asks again
  } finally {
    p.loading = false;
  }
  // Turned again while this one was on its way: ask for the page now shown.
  if (p.offset !== asked) void fetchPage(table);
  renderTables(current);
}

/** A table's pager: where it is, and previous/next (hidden when everything fits one page). */
function renderPager(table, total) {
  const p = pages[table];
  if (p.offset >= total && total > 0) p.offset = Math.floor((total - 1) / PAGE_ROWS) * PAGE_ROWS;
  const pager = $(`${table}-pager`);
  pager.hidden = total <= PAGE_ROWS;
  pager.querySelector('.pager-text').textContent =
    total === 0 ? 'none' : `rows ${p.offset + 1}–${Math.min(total, p.offset + PAGE_ROWS)} of ${total}`;
  pager.querySelector('.prev').disabled = p.offset === 0;
  pager.querySelector('.next').disabled = p.offset + PAGE_ROWS >= total;
}

function turnPage(table, step) {
  const p = pages[table];
  p.offset = Math.max(0, p.offset + step * PAGE_ROWS);
  p.fetched = null;
  renderTables(current);
  void fetchPage(table);
}

function producerRow(p, now) {
  return el(
    'tr',
    { 'data-producer': p.id },
    el('td', {}, p.id),
    el('td', {}, p.host),
    el(
      'td',
      { class: 'state-cell', title: p.stoppedEarly ? 'a signal stopped it before its planned jobs' : '' },
      stateBadge(p.state),
      p.stoppedEarly ? ' (stopped early)' : '',
    ),
    el('td', { class: 'num' }, p.produced),
    el(
      'td',
      { title: time(p.heartbeatAt) },
      p.state === 'running' ? ago(p.heartbeatAt, now) : time(p.doneAt ?? p.lostAt ?? p.heartbeatAt),
    ),
  );
}

function consumerRow(c, runId, now) {
  const ended = c.state === 'cancelled' || c.state === 'stopped' || c.state === 'lost';
  const cell = el('td');
  if (info.actions && !ended && c.state !== 'cancelling') {
    const b = el('button', { type: 'button', class: 'danger' }, 'Cancel');
    b.addEventListener('click', () =>
      act(
        'cancel-consumer',
        { run: runId, consumer: c.id },
        `Cancel consumer ${c.id}? It finishes its current jobs, then exits.`,
      ),
    );
    cell.append(b);
  }
  return el(
    'tr',
    { 'data-consumer': c.id, 'data-state': c.state },
    el('td', {}, c.id),
    el('td', {}, c.host),
    el('td', { class: 'num' }, c.concurrency),
    el('td', { class: 'state-cell' }, stateBadge(c.state)),
    el('td', { class: 'num' }, c.jobsDone + (c.jobsFailed ? ` (+${c.jobsFailed} failed)` : '')),
    el('td', { class: 'runs' }, otherRuns(c.runs, runId)),
    el(
      'td',
      { class: 'current', title: c.current.join('\n') },
      info.actions && !ended ? jobButtons(c.current, runId) : currentJobs(c.current, runId),
    ),
    el('td', { title: time(c.heartbeatAt) }, ended ? time(c.heartbeatAt) : ago(c.heartbeatAt, now)),
    el(
      'td',
      { class: 'when', title: c.cancelReason || '' },
      c.cancelledAt ? `${time(c.cancelledAt)}${c.cancelReason ? ` (${c.cancelReason})` : ''}` : '–',
    ),
    cell,
  );
}

function renderTables(u) {
  const s = u.status;
  const now = s ? s.observedAt : Date.now();
  const waiting = s && s.join.state !== 'joined' ? u.waitingJobs || [] : [];
  $('waiting-jobs').hidden = waiting.length === 0;
  $('waiting-list').replaceChildren(
    info.actions ? jobButtons(waiting, s ? s.runId : '') : currentJobs(waiting, s ? s.runId : ''),
  );
  const producers = s ? s.producers.page : null;
  const consumers = s ? s.consumers.page : null;
  renderPager('producers', producers ? producers.total : 0);
  renderPager('consumers', consumers ? consumers.total : 0);
  $('producers').tBodies[0].replaceChildren(
    ...shownRows('producers', producers).map((p) => producerRow(p, now)),
  );
  $('consumers').tBodies[0].replaceChildren(
    ...shownRows('consumers', consumers).map((c) => consumerRow(c, s.runId, now)),
  );
  const byState = s ? Object.entries(s.consumers.byState) : [];
  $('consumers-summary').textContent = s
    ? `${s.consumers.total}${byState.length ? `: ${byState.map(([k, n]) => `${n} ${k}`).join(', ')}` : ''}`
    : '';
}

/** Shown only for a sharded queue: each shard's BullMQ counts beside the run's numbers there. */
function renderShards(u) {
  const shards = u.shards || [];
  const runShards = u.status && u.status.shards ? u.status.shards.length : shards.length;
  if (runShards !== shards.length)
    showError(
      `Run ${u.runId} is spread over ${runShards} shard(s) but this dashboard reads ${shards.length}: ` +
        `start it with SHARDS=${runShards} to see the run's queue depth.`,
    );
  $('shards-card').hidden = shards.length < 2;
  if (shards.length < 2) return;
  const run = new Map(((u.status && u.status.shards) || []).map((s) => [s.index, s]));
  $('shards').tBodies[0].replaceChildren(
    ...shards.map((q) => {
      const r = run.get(q.index);
      return el(
        'tr',
        { 'data-shard': String(q.index) },
        el('td', { class: 'num' }, q.index),
        el('td', {}, q.name),
        el('td', { class: 'num' }, q.waiting),
        el('td', { class: 'num' }, q.active),
        el('td', { class: 'num' }, q.completed),
        el('td', { class: 'num' }, q.failed),
        el('td', { class: 'num' }, r ? r.unfinished : '–'),
        el('td', {}, r ? (r.closed ? 'yes' : 'no') : '–'),
      );
    }),
  );
}

function renderRuns(u) {
  const select = $('run-select');
  $('run-picker').hidden = u.runs.length < 2;
  const wanted = new URLSearchParams(location.search).get('run') || '';
  const options = [
    // What the page shows when it names no run: RUN_ID when the dashboard was given one, else the latest.
    el(
      'option',
      { value: '' },
      info.defaultRun ? `default (${info.defaultRun})` : `latest${u.runs[0] ? ` (${u.runs[0]})` : ''}`,
    ),
    ...u.runs.map((r) => el('option', { value: r }, r)),
  ];
  if (
    select.options.length !== options.length ||
    [...select.options].some((o, i) => o.value !== options[i].value)
  ) {
    select.replaceChildren(...options);
  }
  select.value = wanted;
}

function onUpdate(u) {
  if (u.error) {
    showError(u.error);
    return;
  }
  showError('');
  current = u;
  if (u.depth && (samples.length === 0 || samples[samples.length - 1].t < u.depth.t)) {
    samples.push(u.depth);
    const cutoff = u.depth.t - info.historyMs;
    while (samples.length && samples[0].t < cutoff) samples.shift();
  }
  renderRun(u);
  renderDrained(u);
  renderTables(u);
  void fetchPage('producers');
  void fetchPage('consumers');
  renderShards(u);
  renderRuns(u);
  drawChart();
  $('updated').textContent = time(Date.now());
}

/** Why the stream was refused, in the server's words (the same checks answer /api/status). */
async function explainRefusal(run) {
  try {
    const res = await fetch(`/api/status${run ? `?run=${encodeURIComponent(run)}` : ''}`, {
      credentials: 'same-origin',
    });
    const detail = res.ok ? {} : await res.json().catch(() => ({}));
    showError(`The live stream was refused${detail.error ? `: ${detail.error}` : ''}; retrying every 5 s.`);
  } catch {
    // offline: the connection state says so
  }
}

function connect() {
  if (source) source.close();
  const run = new URLSearchParams(location.search).get('run');
  source = new EventSource(`/api/events${run ? `?run=${encodeURIComponent(run)}` : ''}`);
  const conn = $('conn');
  source.addEventListener('open', () => {
    conn.dataset.state = 'live';
    conn.textContent = 'live';
  });
  source.addEventListener('error', () => {
    conn.dataset.state = 'reconnecting';
    conn.textContent = 'reconnecting…';
    // Refused (an unknown run, too many pages open): the browser gives up, so try again later.
    if (source.readyState === EventSource.CLOSED) {
      void explainRefusal(run);
      setTimeout(connect, 5000);
    }
  });
  source.addEventListener('history', (e) => {
    samples = JSON.parse(e.data).samples;
    drawChart();
  });
  source.addEventListener('update', (e) => onUpdate(JSON.parse(e.data)));
}

async function start() {
  try {
    const res = await fetch('/api/info', { credentials: 'same-origin' });
    if (res.ok) info = await res.json();
  } catch {
    // the stream will show the connection state
  }
  $('queue-name').textContent = info.queue;
  // Signed in with the token form: a session to end (basic auth lives in the browser until it closes).
  $('logout').hidden = info.access !== 'token';
  $('history-span').textContent = `${Math.round(info.historyMs / 60000)} min`;
  $('run-select').addEventListener('change', (e) => {
    const url = new URL(location.href);
    if (e.target.value) url.searchParams.set('run', e.target.value);
    else url.searchParams.delete('run');
    history.replaceState(null, '', url);
    for (const p of Object.values(pages)) Object.assign(p, { offset: 0, fetched: null });
    // The chart is the queue's, shared by every run: the new stream's history continues it.
    connect();
  });
  for (const table of Object.keys(pages)) {
    const pager = $(`${table}-pager`);
    pager.querySelector('.prev').addEventListener('click', () => turnPage(table, -1));
    pager.querySelector('.next').addEventListener('click', () => turnPage(table, 1));
  }
  $('cancel-run').addEventListener('click', () => {
    if (current.status)
      act(
        'cancel-run',
        { run: current.status.runId },
        `Cancel run ${current.status.runId}? Producers stop, jobs not yet started are cancelled, running ones aborted.`,
      );
  });
  connect();
}

window.addEventListener('resize', drawChart);
void start();
