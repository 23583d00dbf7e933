// leverd's status page (gateway/status_page.md). Plain JavaScript, no build
// step: polls GET /_lever/status (the JSON of `lever ps --json`) and follows
// one service's log over a WebSocket call to the admin service's LogsChan.
'use strict';

const POLL_MS = 1000;
const MAX_LOG_LINES = 1000;

const $ = (id) => document.getElementById(id);

// el('td', {class: 'num'}, 'text', child...): children are text or nodes,
// never HTML (names and log lines are other people's text).
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v !== undefined && v !== null && v !== false) node.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children) {
    if (c === undefined || c === null) continue;
    node.append(c instanceof Node ? c : String(c));
  }
  return node;
}

function ago(iso) {
  const t = Date.parse(iso);
  if (Number.isNaN(t)) return iso || '';
  if (t <= 0) return '';  // the built-in admin service has no start time
  const s = Math.max(0, Math.round((Date.now() - t) / 1000));
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  return `${Math.floor(s / 3600)} h ago`;
}

function text(v) {
  if (v === undefined || v === null) return '';
  return typeof v === 'object' ? JSON.stringify(v) : String(v);
}

const serviceKey = (env, name) => `${env}/${name}`;

// --- status ---------------------------------------------------------------

function setConn(state, label) {
  const c = $('conn');
  c.dataset.state = state;
  c.textContent = label;
}

function render(status) {
  const services = Array.isArray(status.services) ? status.services : [];
  const instances = Array.isArray(status.instances) ? status.instances : [];
  const envs = new Map();
  const envOf = (name) => {
    if (!envs.has(name)) envs.set(name, { services: [], instances: [] });
    return envs.get(name);
  };
  for (const s of services) envOf(s.env).services.push(s);
  for (const i of instances) envOf(i.env).instances.push(i);

  const root = $('envs');
  root.replaceChildren();
  const names = [...envs.keys()].sort((a, b) => (a === 'admin.lever') - (b === 'admin.lever') || a.localeCompare(b));
  for (const env of names) root.append(renderEnv(env, envs.get(env)));
  $('empty').hidden = services.some((s) => s.env !== 'admin.lever');
  updateLogChoices(services);
}

function renderEnv(env, { services, instances }) {
  const section = el('section', { class: 'env', 'data-env': env }, el('h2', {}, env));
  const showDesired = services.some((s) => s.desired !== undefined || s.reason !== undefined);
  const showWaiting = services.some((s) => s.waiting !== undefined);
  const head = el('tr', {},
    el('th', {}, 'Service'), el('th', { class: 'num' }, 'Live version'), el('th', {}, 'Private'),
    el('th', { class: 'num' }, 'Instances'), el('th', { class: 'num' }, 'In flight'),
    showWaiting ? el('th', { class: 'num', title: 'calls waiting for an instance to start' }, 'Waiting') : null,
    showDesired ? el('th', { class: 'num' }, 'Desired') : null,
    showDesired ? el('th', {}, 'Reason') : null,
    el('th', {}, 'Description'));
  const table = el('table', { class: 'services' }, el('thead', {}, head));
  const body = el('tbody');
  for (const s of services.sort((a, b) => String(a.name).localeCompare(String(b.name)))) {
    const mine = instances.filter((i) => i.service === s.name);
    const ready = mine.filter((i) => i.state === 'ready' || i.state === 'builtin').length;
    const inFlight = mine.reduce((n, i) => n + (Number(i.inFlight) || 0), 0);
    const key = serviceKey(env, s.name);
    const row = el('tr', { class: 'service' + (key === logKey ? ' selected' : ''), 'data-service': key,
      title: 'Follow its log below' },
      el('td', {}, el('code', {}, s.name)),
      el('td', { class: 'num' }, (s.liveVersion ? `v${s.liveVersion}` : '—') +
        (s.rolloutVersion ? ` → v${s.rolloutVersion}` : '')),
      el('td', {}, s.private ? 'private' : ''),
      el('td', { class: 'num', 'data-instances': mine.length }, mine.length ? `${ready}/${mine.length} ready` : '0'),
      el('td', { class: 'num' }, inFlight),
      showWaiting ? el('td', { class: 'num' }, text(s.waiting)) : null,
      showDesired ? el('td', { class: 'num' }, text(s.desired)) : null,
      showDesired ? el('td', { class: 'reason' }, text(s.reason)) : null,
      el('td', {}, s.description || ''));
    row.addEventListener('click', () => chooseLog(key));
    body.append(row);
  }
  if (!services.length) body.append(el('tr', {}, el('td', { class: 'none', colspan: 8 }, 'no services')));
  table.append(body);
  section.append(el('h3', {}, 'Services'), table);

  const showResources = instances.some((i) => i.resources !== undefined);
  const ihead = el('tr', {},
    el('th', {}, 'Instance'), el('th', {}, 'Service'), el('th', { class: 'num' }, 'Version'), el('th', {}, 'State'),
    el('th', { class: 'num' }, 'In flight'), el('th', { class: 'num' }, 'PID'), el('th', {}, 'Started'),
    showResources ? el('th', {}, 'Resources') : null);
  const itable = el('table', { class: 'instances' }, el('thead', {}, ihead));
  const ibody = el('tbody');
  for (const i of instances.sort((a, b) => String(a.service).localeCompare(String(b.service)) ||
    String(a.startedAt).localeCompare(String(b.startedAt)))) {
    const id = String(i.id || '');
    ibody.append(el('tr', { class: 'instance', 'data-instance': id, 'data-service': serviceKey(env, i.service) },
      el('td', { title: id }, el('code', {}, id.length > 12 ? id.slice(0, 12) + '…' : id)),
      el('td', {}, el('code', {}, i.service)),
      el('td', { class: 'num' }, i.version ? `v${i.version}` : ''),
      el('td', {}, el('span', { class: `state state-${i.state}` }, i.state)),
      el('td', { class: 'num', 'data-in-flight': i.inFlight }, i.inFlight),
      el('td', { class: 'num' }, i.pid || ''),
      el('td', { title: i.startedAt }, ago(i.startedAt)),
      showResources ? el('td', {}, Array.isArray(i.resources) ? i.resources.join(', ') : text(i.resources)) : null));
  }
  if (!instances.length) ibody.append(el('tr', {}, el('td', { class: 'none', colspan: 8 }, 'no instances running')));
  itable.append(ibody);
  section.append(el('h3', {}, 'Instances'), itable);
  return section;
}

async function poll() {
  try {
    const r = await fetch('/_lever/status', { cache: 'no-store', credentials: 'same-origin' });
    const body = await r.json();
    if (!r.ok) throw new Error(typeof body === 'string' ? body : `HTTP ${r.status}`);
    render(body);
    setConn('live', `updated ${new Date().toLocaleTimeString()}`);
  } catch (e) {
    setConn('error', `cannot read status: ${e.message}`);
  } finally {
    setTimeout(poll, POLL_MS);
  }
}

// --- log tail ---------------------------------------------------------------

let logKey = '';
let logWs = null;

function updateLogChoices(services) {
  const select = $('log-service');
  const keys = services.filter((s) => s.env !== 'admin.lever').map((s) => serviceKey(s.env, s.name)).sort();
  const have = [...select.options].slice(1).map((o) => o.value);
  if (have.join('\n') === keys.join('\n')) return;
  select.replaceChildren(el('option', { value: '' }, '(choose a service)'),
    ...keys.map((k) => el('option', { value: k }, k)));
  select.value = keys.includes(logKey) ? logKey : '';
}

function setLogState(s) { $('log-state').textContent = s; }

function appendLine(line) {
  const box = $('log-lines');
  const atBottom = box.scrollTop + box.clientHeight >= box.scrollHeight - 4;
  box.append(el('div', { class: 'line' }, line));
  while (box.childElementCount > MAX_LOG_LINES) box.firstElementChild.remove();
  if (atBottom) box.scrollTop = box.scrollHeight;
}

function chooseLog(key) {
  $('log-service').value = key;
  for (const row of document.querySelectorAll('tr.service')) row.classList.toggle('selected', row.dataset.service === key);
  openLog(key);
}

function openLog(key) {
  if (logWs) {
    const old = logWs;
    logWs = null;
    old.close();
  }
  logKey = key;
  $('log-lines').replaceChildren();
  if (!key) return setLogState('');
  const slash = key.indexOf('/');
  const env = key.slice(0, slash);
  const service = key.slice(slash + 1);
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  const ws = new WebSocket(`${scheme}//${location.host}/admin/LogsChan?forceenv=admin.lever`);
  logWs = ws;
  setLogState(`connecting to ${key}…`);
  ws.onopen = () => {
    ws.send(JSON.stringify([env, service, { follow: true, lines: 200 }]));
    setLogState(`following ${key}`);
  };
  ws.onmessage = (ev) => {
    let line = ev.data;
    try { line = JSON.parse(ev.data); } catch { /* not JSON: show as is */ }
    appendLine(typeof line === 'string' ? line : JSON.stringify(line));
  };
  ws.onclose = (ev) => {
    if (logWs !== ws) return;  // replaced by another choice
    logWs = null;
    setLogState(`log closed (${ev.code}${ev.reason ? ': ' + ev.reason : ''}); reconnecting…`);
    setTimeout(() => { if (logKey === key && !logWs) openLog(key); }, 2000);
  };
}

// --- start ------------------------------------------------------------------

$('node').textContent = location.host;
$('log-service').addEventListener('change', (e) => chooseLog(e.target.value));
$('log-clear').addEventListener('click', () => $('log-lines').replaceChildren());
poll();
