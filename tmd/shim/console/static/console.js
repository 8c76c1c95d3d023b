// The tmd console: polls /_tmd/console/state and lays it out; every action calls the
// Elasticsearch API of the same shim (so the user's role decides what works). No build step:
// plain browser JavaScript, uPlot (vendored) for the charts. Text from the server is always set
// with textContent, never parsed as HTML.
'use strict';
(() => {
  const STATE = '/_tmd/console/state';
  const ML = '/_ml/trained_models/';
  const WINDOW_S = 15 * 60;
  const GAP_S = 30;
  const COLORS = ['#2563eb', '#db2777', '#059669', '#d97706', '#7c3aed', '#0891b2', '#dc2626', '#65a30d',
                  '#9333ea', '#ea580c', '#0d9488', '#4f46e5'];
  const METRICS = ['throughput', 'p50', 'p99', 'queue'];

  // Everything the page knows; exposed for debugging (and the browser tests read the charts' data).
  const model = { since: 0, t: [], cols: {}, ids: [], charts: {}, reading: null, live: true, polls: 0, timer: null,
                  firstRenderMs: null, renders: [] }; // render times (ms), the last 100: benchmarks/console.py reads them
  window.tmdConsole = model;

  const $ = (sel) => document.querySelector(sel);

  function h(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === 'class') node.className = v;
      else if (k === 'dataset') Object.assign(node.dataset, v);
      else if (k.startsWith('on')) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v === true ? '' : v);
    }
    for (const c of children.flat()) {
      if (c === null || c === undefined || c === false) continue;
      node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return node;
  }

  const fmt = {
    num: (v, digits = 1) => (v === null || v === undefined ? '–' : Number(v).toFixed(digits)),
    ms: (v) => (v === null || v === undefined ? '–' : (v >= 100 ? v.toFixed(0) : v.toFixed(1)) + ' ms'),
    pct: (v) => Math.round(v * 100) + '%',
    time: (iso) => { const d = new Date(iso); return isNaN(d) ? iso : d.toLocaleTimeString(); },
  };

  // ------------------------------------------------------------------ the Elasticsearch API

  async function es(method, path, body, query) {
    const url = path + (query && Object.keys(query).length ? '?' + new URLSearchParams(query) : '');
    const init = { method, headers: { Accept: 'application/json' } };
    if (body !== undefined) { init.body = JSON.stringify(body); init.headers['Content-Type'] = 'application/json'; }
    let response, json = null;
    try {
      response = await fetch(url, init);
      json = await response.json().catch(() => null);
    } catch (err) {
      return { ok: false, status: 0, reason: 'the shim is not reachable: ' + err.message };
    }
    const reason = json && json.error ? (json.error.reason || json.error.type) : `HTTP ${response.status}`;
    return { ok: response.ok, status: response.status, json, reason };
  }

  function toast(text, kind) {
    const node = h('div', { class: 'toast ' + (kind || 'ok'), role: 'status' }, text);
    $('#toasts').append(node);
    setTimeout(() => node.remove(), kind === 'error' ? 12000 : 5000);
  }

  async function act(label, method, path, body, query) {
    const result = await es(method, path, body, query);
    if (result.ok) toast(label + ': done', 'ok');
    else toast(`${label}: ${result.status} ${result.reason}`, 'error');
    schedule(300); // show the effect soon
    return result;
  }

  // ------------------------------------------------------------------ deployments table

  function bar(kind) {
    return h('span', { class: 'bar ' + kind }, h('span', { class: 'fill' }));
  }

  function setBar(span, fraction) {
    const f = Math.max(0, Math.min(1, fraction || 0));
    const width = (f * 100).toFixed(1) + '%';
    if (span.firstChild.style.width !== width) span.firstChild.style.width = width;
    span.classList.toggle('warn', f >= 0.5 && f < 0.8);
    span.classList.toggle('bad', f >= 0.8);
  }

  function setText(node, text) {
    const value = String(text);
    if (node.textContent !== value) node.textContent = value;
  }

  function pill(state) {
    return h('span', { class: 'pill ' + state }, state);
  }

  function actionsCell(row) {
    const id = row.deployment_id;
    const path = ML + encodeURIComponent(id) + '/deployment/';
    const count = h('input', { type: 'number', min: 1, value: row.target_allocations || 1, class: 'alloc',
                               'aria-label': 'number of allocations',
                               oninput: () => { count.dataset.edited = '1'; } }); // keep what the user typed
    const update = h('button', { class: 'update', onclick: () => {
      delete count.dataset.edited;
      const n = parseInt(count.value, 10);
      act(`update ${id} to ${n} allocations`, 'POST', path + '_update', { number_of_allocations: n });
    } }, 'Update');
    const clear = h('button', { class: 'clear', onclick: () => act(`clear cache of ${id}`, 'POST', path + 'cache/_clear') },
                    'Clear cache');
    let armed = null;
    const stop = h('button', { class: 'stop danger', onclick: () => {
      if (!armed) { // a second click within 4 s stops it: no modal dialogs
        stop.textContent = 'Confirm stop';
        armed = setTimeout(() => { armed = null; stop.textContent = 'Stop'; }, 4000);
        return;
      }
      clearTimeout(armed); armed = null; stop.textContent = 'Stop';
      act(`stop ${id}`, 'POST', path + '_stop');
    } }, 'Stop');
    return h('td', { class: 'actions' }, count, update, clear, stop);
  }

  function renderDeployments(rows) {
    const body = $('#deployments tbody');
    const existing = new Map([...body.children].map((tr) => [tr.dataset.deployment, tr]));
    rows.forEach((row, i) => {
      let tr = existing.get(row.deployment_id);
      if (!tr) {
        tr = h('tr', { dataset: { deployment: row.deployment_id } },
          h('td', { class: 'name' }, h('div', { class: 'id' }), h('div', { class: 'sub' }), h('div', { class: 'reason' })),
          h('td', { class: 'state' }),
          h('td', { class: 'alloc-cell' }, h('span', { class: 'count' }), bar('alloc inverse')),
          h('td', { class: 'threads' }),
          h('td', { class: 'queue' }, bar('queue'), h('span', { class: 'count' })),
          h('td', { class: 'num throughput' }), h('td', { class: 'num p50' }), h('td', { class: 'num p99' }),
          h('td', { class: 'num errors' }),
          actionsCell(row));
      }
      existing.delete(row.deployment_id);
      if (body.children[i] !== tr) body.insertBefore(tr, body.children[i] || null);
      const q = (sel) => tr.querySelector(sel);
      setText(q('.id'), row.deployment_id);
      const adaptive = row.adaptive_allocations && row.adaptive_allocations.enabled
        ? ` · adaptive ${row.adaptive_allocations.min_number_of_allocations ?? 0}–${row.adaptive_allocations.max_number_of_allocations ?? '∞'}` : '';
      setText(q('.sub'), (row.model_id === row.deployment_id ? '' : `model ${row.model_id} · `) +
        `${row.priority} priority` + adaptive);
      setText(q('.reason'), row.reason);
      if (q('td.state').textContent !== row.state) q('td.state').replaceChildren(pill(row.state));
      setText(q('.alloc-cell .count'), `${row.allocations} / ${row.target_allocations}`);
      setBar(q('.alloc-cell .bar'), row.target_allocations ? row.allocations / row.target_allocations : 0);
      setText(q('td.threads'), row.threads_per_allocation);
      const count = q('input.alloc'); // follows the target (the autoscaler, kubectl) unless being edited
      if (!count.dataset.edited && document.activeElement !== count && count.value !== String(row.target_allocations)) {
        count.value = row.target_allocations;
      }
      setBar(q('.queue .bar'), row.queue_fill);
      setText(q('.queue .count'), `${row.pending} / ${row.queue_capacity} (${fmt.pct(row.queue_fill)})`);
      setText(q('.throughput'), row.throughput === null ? '–' : `${fmt.num(row.throughput)}/s`);
      const tip = `${row.throughput_last_minute} in the last complete minute; ${row.inference_count} in all`;
      if (q('.throughput').title !== tip) q('.throughput').title = tip;
      setText(q('.p50'), fmt.ms(row.p50_ms));
      setText(q('.p99'), fmt.ms(row.p99_ms));
      const errors = q('.errors');
      setText(errors, `${row.errors} / ${row.rejected} / ${row.timeouts}`);
      errors.classList.toggle('bad', row.errors + row.rejected + row.timeouts > 0);
    });
    for (const tr of existing.values()) tr.remove();
    $('#no-deployments').hidden = rows.length > 0;
  }

  // ------------------------------------------------------------------ cards, grid, conditions, events

  function renderCards(reading) {
    const rows = reading.deployments;
    const placed = rows.reduce((a, r) => a + r.allocations, 0);
    const target = rows.reduce((a, r) => a + r.target_allocations, 0);
    const tput = rows.reduce((a, r) => a + (r.throughput || 0), 0);
    const failed = reading.grid.failed_routes;
    const ml = reading.grid.nodes.filter((n) => n.ml_node);
    const notReady = ml.filter((n) => !n.ready).length;
    const usable = ml.filter((n) => n.ready);
    const total = usable.reduce((a, n) => a + n.processors, 0);
    const free = usable.reduce((a, n) => a + Math.max(0, n.processors - n.used_processors), 0);
    const card = (label, value, kind, id) => h('div', { class: 'card ' + (kind || ''), id },
                                                h('div', { class: 'value' }, value), h('div', { class: 'label' }, label));
    $('#cards').replaceChildren(
      card('deployments', rows.length, '', 'card-deployments'),
      card('allocations placed / asked', `${placed} / ${target}`, placed < target ? 'warn' : '', 'card-allocations'),
      card(notReady ? `ML nodes, ${notReady} not ready` : 'ML nodes', ml.length, notReady ? 'warn' : '', 'card-nodes'),
      card(`processors free of ${total}`, free, '', 'card-processors'),
      card('failed routes', failed, failed ? 'bad' : 'good', 'card-failed'),
      card('documents / s', fmt.num(tput), '', 'card-throughput'));
  }

  function gridCell(grid, node, j, cell) {
    const deployment = grid.deployments[j];
    if (!cell) return h('td', { class: 'cell none', dataset: { node, deployment, state: 'none' } });
    const title = `${node} · ${deployment}: ${cell.state}, ${cell.current_allocations}/${cell.target_allocations} allocations, ${cell.pending} pending` + (cell.reason ? `\n${cell.reason}` : '');
    return h('td', { class: 'cell ' + cell.state, title, dataset: { node, deployment, state: cell.state } },
      h('div', { class: 'cell-state' }, cell.state),
      h('div', { class: 'cell-alloc' }, `${cell.current_allocations}/${cell.target_allocations}`),
      cell.reason ? h('div', { class: 'cell-reason' }, cell.reason) : null);
  }

  // A row's header: the node, the processors tmd's allocations use of those it may use, and
  // why it cannot take allocations (not ready, not an ML node).
  function nodeHeader(node) {
    const capacity = node.processors === null ? `${node.used_processors} CPUs used`
      : `${node.used_processors} / ${node.processors} CPUs used`;
    const state = node.ready === false ? 'not-ready' : node.processors !== null &&
      node.used_processors >= node.processors ? 'full' : 'ok';
    const title = `${node.name}: ${capacity}` + (node.processors === null ? '' :
      `, ${Math.max(0, node.processors - node.used_processors)} free`) + (node.reason ? `\n${node.reason}` : '');
    return h('th', { class: 'node ' + state, title, dataset: { node: node.name, state } },
      h('div', { class: 'node-name' }, node.name),
      h('div', { class: 'node-capacity' }, capacity),
      node.reason ? h('div', { class: 'node-reason' }, node.reason) : null);
  }

  // Same nodes and deployments as last time: replace only the cells that changed (a large grid
  // is thousands of cells); otherwise draw it anew.
  let drawnGrid = null;
  function renderGrid(grid) {
    const names = (g) => g.nodes.map((n) => n.name).join('\n');
    const same = drawnGrid && names(drawnGrid) === names(grid) &&
      drawnGrid.deployments.join('\n') === grid.deployments.join('\n');
    if (same) {
      const rows = $('#grid tbody').children;
      grid.nodes.forEach((node, i) => {
        if (JSON.stringify(node) !== JSON.stringify(drawnGrid.nodes[i])) rows[i].children[0].replaceWith(nodeHeader(node));
      });
      grid.cells.forEach((line, i) => line.forEach((cell, j) => {
        if (JSON.stringify(cell) !== JSON.stringify(drawnGrid.cells[i][j])) {
          rows[i].children[j + 1].replaceWith(gridCell(grid, grid.nodes[i].name, j, cell));
        }
      }));
    } else {
      const head = h('tr', {}, h('th', { class: 'corner' }, 'node \\ deployment'),
                     grid.deployments.map((d) => h('th', { class: 'dep', title: d }, d)));
      $('#grid thead').replaceChildren(head);
      $('#grid tbody').replaceChildren(...grid.nodes.map((node, i) => h('tr', { dataset: { node: node.name } },
        nodeHeader(node), grid.cells[i].map((cell, j) => gridCell(grid, node.name, j, cell)))));
    }
    drawnGrid = grid;
    const notReady = grid.nodes.filter((n) => n.ready === false).length;
    const summary = `${grid.nodes.length} nodes · ${grid.deployments.length} deployments` +
      (notReady ? ` · ${notReady} not ready` : '') + (grid.failed_routes ? ` · ${grid.failed_routes} failed` : '');
    $('#grid-summary').textContent = summary;
    $('#grid-error').textContent = grid.nodes_error;
    $('#grid-error').hidden = !grid.nodes_error;
  }

  function renderConditions(rows) {
    const out = rows.map((row) => h('div', { class: 'conditions' },
      h('div', { class: 'cond-title' }, row.deployment_id),
      h('div', { class: 'cond-list' }, row.conditions.map((c) => {
        const good = (c.type === 'Degraded') ? c.status === 'False' : c.status === 'True';
        const kind = c.type === 'Progressing' ? 'neutral' : (good ? 'good' : 'bad');
        return h('span', { class: 'cond ' + kind, title: `${c.reason} since ${c.since}\n${c.message}` },
                 `${c.type}: ${c.status}`, c.message ? h('small', {}, ' · ' + c.message) : null);
      }))));
    $('#conditions').replaceChildren(...(out.length ? out : [h('p', { class: 'empty' }, 'No deployments.')]));
  }

  function renderEvents(reading) {
    const events = reading.events;
    $('#events tbody').replaceChildren(...events.map((e) => h('tr', { class: e.type === 'Warning' ? 'warning' : '' },
      h('td', { class: 'time' }, fmt.time(e.time)), h('td', {}, e.type), h('td', {}, e.reason),
      h('td', {}, e.deployment_id), h('td', { class: 'msg', title: e.object }, e.message))));
    const empty = $('#no-events');
    empty.hidden = events.length > 0;
    empty.textContent = reading.events_error || 'No events.';
  }

  function renderForms(reading) {
    const startModel = $('#start select[name=model_id]');
    const wanted = reading.models.filter((m) => m.fully_defined).map((m) => m.model_id);
    syncOptions(startModel, wanted);
    const inferTarget = $('#infer select[name=id]');
    syncOptions(inferTarget, reading.deployments.map((r) => r.deployment_id));
  }

  function syncOptions(select, values) {
    const current = [...select.options].map((o) => o.value);
    if (current.join('\n') === values.join('\n')) return;
    const keep = select.value;
    select.replaceChildren(...values.map((v) => h('option', { value: v }, v)));
    if (values.includes(keep)) select.value = keep;
  }

  // ------------------------------------------------------------------ charts

  function mergeSeries(series, now) {
    for (const id of Object.keys(series.deployments)) {
      if (!model.cols[id]) model.cols[id] = Object.fromEntries(METRICS.map((m) => [m, new Array(model.t.length).fill(null)]));
    }
    series.t.forEach((t, k) => {
      const last = model.t.length ? model.t[model.t.length - 1] : null;
      if (last !== null && t - last > GAP_S) { // nothing was sampled while no console was open: draw a gap
        model.t.push(last + 1);
        for (const cols of Object.values(model.cols)) for (const m of METRICS) cols[m].push(null);
      }
      model.t.push(t);
      for (const [id, cols] of Object.entries(model.cols)) {
        const incoming = series.deployments[id];
        for (const m of METRICS) cols[m].push(incoming ? incoming[m][k] : null);
      }
    });
    let drop = 0;
    while (drop < model.t.length && model.t[drop] < now - WINDOW_S) drop++;
    if (drop) {
      model.t.splice(0, drop);
      for (const cols of Object.values(model.cols)) for (const m of METRICS) cols[m].splice(0, drop);
    }
    for (const [id, cols] of Object.entries(model.cols)) { // forget deployments with nothing left in the window
      if (METRICS.every((m) => cols[m].every((v) => v === null))) delete model.cols[id];
    }
  }

  function chartSpecs() {
    const ids = Object.keys(model.cols).sort();
    const color = (i) => COLORS[i % COLORS.length];
    return {
      throughput: { series: ids.map((id, i) => ({ id, metric: 'throughput', label: id, stroke: color(i) })) },
      latency: { series: ids.flatMap((id, i) => [
        { id, metric: 'p50', label: id + ' p50', stroke: color(i) },
        { id, metric: 'p99', label: id + ' p99', stroke: color(i), dash: [6, 4] }]) },
      queue: { series: ids.map((id, i) => ({ id, metric: 'queue', label: id, stroke: color(i) })) },
    };
  }

  function renderCharts() {
    const ids = Object.keys(model.cols).sort();
    const rebuild = ids.join('\n') !== model.ids.join('\n');
    model.ids = ids;
    for (const [key, spec] of Object.entries(chartSpecs())) {
      const data = [model.t, ...spec.series.map((s) => model.cols[s.id][s.metric])];
      const node = $('#chart-' + key);
      if (rebuild || !model.charts[key]) {
        if (model.charts[key]) model.charts[key].destroy();
        model.charts[key] = new uPlot({
          width: Math.max(260, node.clientWidth), height: 220,
          scales: { x: { time: true }, y: { range: (u, min, max) => [0, Math.max(max || 0, 1) * 1.1] } },
          axes: [{ stroke: '#64748b', grid: { stroke: '#eef2f7' } },
                 { stroke: '#64748b', grid: { stroke: '#eef2f7' }, size: 50 }],
          series: [{}, ...spec.series.map((s) => ({ label: s.label, stroke: s.stroke, width: 2, dash: s.dash,
                                                      points: { show: false }, spanGaps: false }))],
          legend: { live: false },
        }, data, node);
      } else {
        model.charts[key].setData(data);
      }
    }
  }

  window.addEventListener('resize', () => {
    for (const [key, chart] of Object.entries(model.charts)) {
      chart.setSize({ width: Math.max(260, $('#chart-' + key).clientWidth), height: 220 });
    }
  });

  // ------------------------------------------------------------------ polling

  // The grid of a large cluster is thousands of cells: redraw a part only when its data changed.
  const drawn = {};
  function changed(part, value) {
    const text = JSON.stringify(value);
    if (drawn[part] === text) return false;
    drawn[part] = text;
    return true;
  }

  async function poll() {
    model.timer = null;
    try {
      const response = await fetch(STATE + '?since=' + model.since, { headers: { Accept: 'application/json' } });
      const json = await response.json();
      if (!response.ok) throw new Error((json.error && json.error.reason) || `HTTP ${response.status}`);
      const started = performance.now();
      model.reading = json;
      model.polls += 1;
      if (json.series.t.length) model.since = json.series.t[json.series.t.length - 1];
      $('#banner').hidden = true;
      $('#meta').textContent = `${json.cluster_name} · Elasticsearch API ${json.version} · updated ${new Date(json.time * 1000).toLocaleTimeString()}`;
      renderCards(json);
      renderDeployments(json.deployments);
      if (changed('grid', json.grid)) renderGrid(json.grid);
      mergeSeries(json.series, json.time);
      renderCharts();
      if (changed('conditions', json.deployments.map((r) => [r.deployment_id, r.conditions]))) {
        renderConditions(json.deployments);
      }
      if (changed('events', [json.events, json.events_error])) renderEvents(json);
      renderForms(json);
      model.renders.push(performance.now() - started);
      if (model.renders.length > 100) model.renders.shift();
      if (model.firstRenderMs === null) model.firstRenderMs = performance.now(); // since navigation start
    } catch (err) {
      const banner = $('#banner');
      banner.textContent = 'Cannot read the console state: ' + err.message + ' (retrying)';
      banner.hidden = false;
    }
    schedule();
  }

  function schedule(delay) {
    if (!model.live && delay === undefined) return;
    if (model.timer) clearTimeout(model.timer);
    const every = ((model.reading && model.reading.sample_seconds) || 2) * 1000 * 1.5;
    model.timer = setTimeout(poll, delay === undefined ? every : delay);
  }

  // ------------------------------------------------------------------ forms

  $('#start').addEventListener('submit', async (event) => {
    event.preventDefault();
    const form = new FormData(event.target);
    const modelId = form.get('model_id');
    if (!modelId) { toast('start: no fully defined model to start', 'error'); return; }
    const query = {};
    for (const name of ['deployment_id', 'number_of_allocations', 'threads_per_allocation', 'queue_capacity',
                        'cache_size', 'priority', 'wait_for']) {
      const v = String(form.get(name) || '').trim();
      if (v) query[name] = v;
    }
    let body;
    if (form.get('adaptive') === 'on') { // Elasticsearch refuses number_of_allocations with adaptive allocations
      delete query.number_of_allocations;
      const adaptive = { enabled: true };
      for (const name of ['min_number_of_allocations', 'max_number_of_allocations']) {
        const v = String(form.get(name) || '').trim();
        if (v) adaptive[name] = parseInt(v, 10);
      }
      body = { adaptive_allocations: adaptive };
    }
    const button = event.target.querySelector('button');
    button.disabled = true;
    button.textContent = 'Starting…';
    try {
      await act(`start ${query.deployment_id || modelId}`, 'POST', ML + encodeURIComponent(modelId) + '/deployment/_start',
                body, query);
    } finally {
      button.disabled = false;
      button.textContent = 'Start';
    }
  });

  $('#infer').addEventListener('submit', async (event) => {
    event.preventDefault();
    const form = new FormData(event.target);
    const id = form.get('id');
    const row = model.reading && model.reading.deployments.find((r) => r.deployment_id === id);
    const info = row && model.reading.models.find((m) => m.model_id === row.model_id);
    const field = info ? info.input_field : 'text_field';
    const started = performance.now();
    const result = await es('POST', ML + encodeURIComponent(id) + '/_infer', { docs: [{ [field]: form.get('text') }] });
    const out = $('#infer-result');
    out.hidden = false;
    out.classList.toggle('error', !result.ok);
    out.textContent = `${result.status} in ${(performance.now() - started).toFixed(0)} ms\n` +
      (result.json ? JSON.stringify(result.json, null, 2) : result.reason);
  });

  $('#live').addEventListener('change', (event) => {
    model.live = event.target.checked;
    if (model.live) schedule(0);
    else if (model.timer) { clearTimeout(model.timer); model.timer = null; }
  });

  poll();
})();
