// Tarefas console: a small single-page app over the admin API (/api/v1). No build step.
// The operator's token is kept in this tab's sessionStorage; a link ending in #token=…
// (as `tarefas demo` prints it) signs in directly.
'use strict';

const TOKEN_KEY = 'tarefas.token';
const $ = (sel, root = document) => root.querySelector(sel);
const view = () => $('#view');
let pageAbort = new AbortController();
let schema = null;

// ---------- words ----------
const STATUS = {
  active: 'Ativa', paused: 'Pausada', deleted: 'Excluída',
  planning: 'Planejando', running: 'Em execução', done: 'Concluída',
  done_with_errors: 'Concluída com erros', failed: 'Falhou', cancelled: 'Cancelada',
};
const TABLES = { contacts: 'Tabela de Contatos', chats: 'Tabela de Atendimentos' };
const TABLE_SHORT = { contacts: 'Contatos', chats: 'Atendimentos' };
const FIELDS = {
  id: 'Id', name: 'Nome', mobile: 'Celular', phone: 'Telefone', email: 'E-mail',
  created_at: 'Data de criação', updated_at: 'Data de atualização', group: 'Grupo',
  organization: 'Organização', 'custom.<key>': 'Campo personalizado', department: 'Departamento',
  channel: 'Canal', situation: 'Situação', workflow: 'Workflow', workflow_step: 'Etapa do workflow',
  last_message_at: 'Data da última mensagem',
};
const OPS = {
  eq: 'é igual a', ne: 'é diferente de', contains: 'contém', not_contains: 'não contém',
  starts_with: 'começa com', in: 'é um de', not_in: 'não é nenhum de', is_set: 'está preenchido',
  is_not_set: 'não está preenchido', gt: 'maior que', gte: 'maior ou igual a', lt: 'menor que',
  lte: 'menor ou igual a', on: 'no dia', before: 'antes de', after: 'depois de', between: 'entre',
  within_last: 'nos últimos', more_than_ago: 'há mais de',
};
const SITUATIONS = { wait_for_chat: 'Na fila', auto: 'Automático', in_chat: 'Em atendimento' };
const KINDS = {
  every_minutes: 'em minutos', every_hours: 'em horas', daily: 'todos os dias',
  weekdays: 'dias da semana', month_day: 'data específica no mês', cron: 'expressão cron (avançado)',
};
const DAYS = [['mon', 'Segunda'], ['tue', 'Terça'], ['wed', 'Quarta'], ['thu', 'Quinta'],
  ['fri', 'Sexta'], ['sat', 'Sábado'], ['sun', 'Domingo']];
const CHAT_ACTIONS = {
  flow: 'Iniciar um Flow', transfer_to_agent: 'Transferir para um agente', put_in_queue: 'Colocar na fila',
  change_department: 'Alterar o departamento', close: 'Finalizar o atendimento', reopen: 'Reabrir o atendimento',
  update_workflow: 'Mover para uma etapa do workflow', update_tabulation: 'Atualizar a tabulação',
};
const POLICY = [
  ['when_in_chat', 'Quando o contato estiver em atendimento com um agente',
    [['run_remove_agent', 'Executar o Flow e remover o agente do atendimento'], ['skip', 'Não executar o Flow']]],
  ['when_in_queue', 'Quando o contato estiver na fila aguardando atendimento',
    [['abort_and_start', 'Abortar o Flow atual e iniciar este'], ['skip', 'Não fazer nada']]],
  ['when_in_auto', 'Quando o contato estiver em um atendimento automático (chatbot)',
    [['run_keep_auto', 'Executar o Flow e manter o atendimento no automático'], ['skip', 'Não executar o Flow']]],
];

function esc(s) {
  return String(s ?? '').replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]);
}
function when(t) {
  if (!t) return '—';
  const d = new Date(t);
  return isNaN(d) ? String(t) : d.toLocaleString('pt-BR', { dateStyle: 'short', timeStyle: 'short' });
}
function brDate(s) {
  const m = /^(\d{4})-(\d{2})-(\d{2})/.exec(s || '');
  return m ? `${m[3]}/${m[2]}/${m[1]}` : s;
}
function recurrenceWords(r) {
  r = r || { kind: 'manual' };
  const at = r.at ? ` às ${r.at}` : '';
  let w;
  switch (r.kind) {
    case 'manual': return 'Manual';
    case 'every_minutes': w = `A cada ${r.n} ${r.n == 1 ? 'minuto' : 'minutos'}`; break;
    case 'every_hours': w = `A cada ${r.n} ${r.n == 1 ? 'hora' : 'horas'}`; break;
    case 'daily': w = `Todos os dias${at}`; break;
    case 'weekdays': {
      const names = (r.days || []).map((d) => (DAYS.find(([k]) => k === d) || [d, d])[1].toLowerCase());
      w = `Dias da semana (${names.join(', ')})${at}`; break;
    }
    case 'month_day': w = `Todo dia ${r.day} do mês${at}`; break;
    case 'cron': w = `Cron: ${r.expr}`; break;
    default: w = r.kind;
  }
  return r.ends_on ? `${w}, até ${brDate(r.ends_on)}` : w;
}
function announce(text) {
  const a = $('#announce');
  a.textContent = '';
  setTimeout(() => { a.textContent = text; }, 50);
}

// ---------- API ----------
function token() { return sessionStorage.getItem(TOKEN_KEY); }
async function api(method, path, body) {
  const opts = { method, headers: { Authorization: `Bearer ${token()}` }, signal: pageAbort.signal };
  if (body !== undefined) {
    opts.headers['Content-Type'] = 'application/json';
    opts.body = JSON.stringify(body);
  }
  const r = await fetch(path, opts);
  let data = null;
  if (r.status !== 204) {
    try { data = await r.json(); } catch (_) { data = null; }
  }
  if (r.status === 401) {
    sessionStorage.removeItem(TOKEN_KEY);
    location.hash = '#/entrar';
    throw new Error('não autorizado');
  }
  return { status: r.status, data };
}
async function loadSchema() {
  if (!schema) schema = (await api('GET', '/api/v1/schema')).data;
  return schema;
}

// ---------- routing ----------
async function route() {
  pageAbort.abort();
  pageAbort = new AbortController();
  const h = location.hash || '#/tarefas';
  const m = /^#token=(.+)$/.exec(h);
  if (m) {
    sessionStorage.setItem(TOKEN_KEY, decodeURIComponent(m[1]));
    history.replaceState(null, '', '#/tarefas');
    return route();
  }
  if (!token() && h !== '#/entrar') { location.hash = '#/entrar'; return; }
  $('#nav-tarefas').toggleAttribute('aria-current', false);
  try {
    let p;
    if (h === '#/entrar') return renderLogin();
    await showWho();
    if (h === '#/tarefas') { $('#nav-tarefas').setAttribute('aria-current', 'page'); return await renderList(); }
    if (h === '#/tarefas/nova') return await renderForm(null);
    if ((p = /^#\/tarefas\/(\d+)$/.exec(h))) return await renderForm(Number(p[1]));
    if ((p = /^#\/pedidos\/(.+)$/.exec(h))) return await renderRequest(decodeURIComponent(p[1]));
    if ((p = /^#\/execucoes\/(\d+)$/.exec(h))) return await renderRun(Number(p[1]));
    if ((p = /^#\/tarefas\/(\d+)\/simular$/.exec(h))) return await renderDryRun(Number(p[1]));
    if (h === '#/descadastros') return await renderOptOuts();
    view().innerHTML = '<h1>Página não encontrada</h1><p><a href="#/tarefas">Voltar para Tarefas</a></p>';
  } catch (e) {
    if (e.name === 'AbortError' || e.message === 'não autorizado') return;
    view().innerHTML = `<h1>Algo deu errado</h1><p role="alert">${esc(e.message)}</p>`;
  }
}
function setPage(title, html) {
  document.title = `${title} · Tarefas`;
  view().innerHTML = html;
  const h1 = $('h1', view());
  if (h1) { h1.tabIndex = -1; h1.focus(); }
}
let whoShown = false;
async function showWho() {
  if (whoShown) return;
  const r = await api('GET', '/api/v1/me');
  $('#who-account').textContent = r.data.account;
  $('#who').hidden = false;
  whoShown = true;
}

// ---------- login ----------
function renderLogin() {
  $('#who').hidden = true;
  whoShown = false;
  setPage('Entrar', `
    <h1>Entrar no Tarefas</h1>
    <form id="login" class="card" novalidate>
      <div class="field">
        <label for="token">Token de acesso</label>
        <input type="password" id="token" autocomplete="off" aria-describedby="token-hint" required style="width:100%;max-width:36rem">
        <p class="hint" id="token-hint">Peça um token ao administrador: <code>tarefas token create --account CONTA</code>. Ele fica guardado só nesta aba.</p>
      </div>
      <p class="error" id="login-error" role="alert"></p>
      <button class="primary" type="submit">Entrar</button>
    </form>`);
  $('#login').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const t = $('#token').value.trim();
    const r = await fetch('/api/v1/me', { headers: { Authorization: `Bearer ${t}` } });
    if (r.status === 200) {
      sessionStorage.setItem(TOKEN_KEY, t);
      location.hash = '#/tarefas';
    } else {
      $('#login-error').textContent = 'Token inválido ou revogado.';
      $('#token').setAttribute('aria-invalid', 'true');
      $('#token').focus();
    }
  });
}
$('#logout').addEventListener('click', () => {
  sessionStorage.removeItem(TOKEN_KEY);
  location.hash = '#/entrar';
});

// ---------- task list ----------
async function renderList() {
  const { data: tasks } = await api('GET', '/api/v1/tasks');
  const rows = tasks.map((t) => {
    const d = t.definition || {};
    const last = t.last_run;
    const lastCell = last
      ? `<a href="#/execucoes/${last.id}">${when(last.started_at)}</a><small><span class="status ${esc(last.status)}">${esc(STATUS[last.status] || last.status)}</span></small>`
      : '—';
    const paused = t.status === 'paused';
    return `<tr data-task="${t.id}">
      <td><a href="#/tarefas/${t.id}">${esc(t.name)}</a><small>${esc(t.objective || '')}</small></td>
      <td>${esc(recurrenceWords(d.recurrence))}</td>
      <td>${esc(TABLE_SHORT[t.table_name] || t.table_name)}</td>
      <td><span class="status ${esc(t.status)}">${esc(STATUS[t.status] || t.status)}</span></td>
      <td>${when(t.next_fire_at)}</td>
      <td>${lastCell}</td>
      <td><div class="actions">
        <button type="button" class="primary" data-run="${t.id}" aria-label="Executar Tarefa ${esc(t.name)}">Executar Tarefa</button>
        <a class="button" href="#/tarefas/${t.id}/simular" aria-label="Simular ${esc(t.name)}">Simular</a>
        <a class="button" href="#/tarefas/${t.id}" aria-label="Editar ${esc(t.name)}">Editar</a>
        <button type="button" data-${paused ? 'resume' : 'pause'}="${t.id}" aria-label="${paused ? 'Retomar' : 'Pausar'} ${esc(t.name)}">${paused ? 'Retomar' : 'Pausar'}</button>
        <button type="button" class="danger" data-delete="${t.id}" aria-label="Excluir ${esc(t.name)}">Excluir</button>
      </div></td></tr>`;
  }).join('');
  setPage('Tarefas', `
    <div id="task-list">
    <div class="bar"><h1>Tarefas</h1><a class="button primary" href="#/tarefas/nova">+ Adicionar</a></div>
    ${tasks.length === 0 ? '<p class="empty card">Nenhuma tarefa ainda. Use “+ Adicionar” para criar a primeira.</p>' : `
    <table>
      <caption class="visually-hidden">Tarefas da conta</caption>
      <thead><tr><th scope="col">Nome da tarefa / Objetivo</th><th scope="col">Recorrência</th><th scope="col">Tabela</th>
      <th scope="col">Status</th><th scope="col">Próxima execução</th><th scope="col">Última execução</th><th scope="col">Ações</th></tr></thead>
      <tbody>${rows}</tbody>
    </table>`}
    </div>`);
  // On the page's own element (re-rendered each time), so handlers never pile up.
  $('#task-list').addEventListener('click', async (ev) => {
    const b = ev.target.closest('button');
    if (!b) return;
    if (b.dataset.run) return executeTask(Number(b.dataset.run), b);
    if (b.dataset.pause) { await api('POST', `/api/v1/tasks/${b.dataset.pause}/pause`); announce('Tarefa pausada'); return route(); }
    if (b.dataset.resume) { await api('POST', `/api/v1/tasks/${b.dataset.resume}/resume`); announce('Tarefa retomada'); return route(); }
    if (b.dataset.delete) {
      if (!confirm('Excluir esta tarefa? O histórico das execuções é mantido.')) return;
      await api('DELETE', `/api/v1/tasks/${b.dataset.delete}`);
      announce('Tarefa excluída');
      return route();
    }
  });
}
async function executeTask(id, button) {
  if (!(await confirmExecute(id))) return;
  if (button) button.disabled = true;
  const r = await api('POST', `/api/v1/tasks/${id}/run`);
  if (r.status === 202) {
    location.hash = `#/pedidos/${encodeURIComponent(r.data.request_id)}`;
  } else {
    if (button) button.disabled = false;
    alert(r.data?.error || 'Não foi possível executar a tarefa.');
  }
}

// ---------- run pages ----------
async function renderRequest(requestId) {
  setPage('Execução', `<h1>Executar Tarefa</h1>
    <p role="status" id="wait">Pedido enviado. Aguardando um worker iniciar a execução…</p>`);
  const started = Date.now();
  const signal = pageAbort.signal;
  while (!signal.aborted) {
    const r = await api('GET', `/api/v1/requests/${encodeURIComponent(requestId)}`);
    if (r.data?.run) { location.replace(`#/execucoes/${r.data.run.id}`); return; }
    if (Date.now() - started > 120000) {
      $('#wait').textContent = 'Nenhum worker iniciou a execução em 2 minutos. Verifique se `tarefas worker` está rodando; a execução começará quando houver um.';
    }
    await new Promise((res) => setTimeout(res, 400));
  }
}

function runCounts(run) {
  const c = run.counts;
  const cell = (label, n, key) => `<div><dt>${label}</dt><dd data-count="${key}">${n}</dd></div>`;
  return `<dl class="counts">${cell('Planejados', c.planned, 'planned')}${cell('Enviados', c.done, 'done')}
    ${cell('Ignorados', c.skipped, 'skipped')}${cell('Falharam', c.failed, 'failed')}
    ${cell('Incertos', c.unknown, 'unknown')}${cell('Pendentes', c.pending, 'pending')}</dl>`;
}
function showRun(run) {
  const c = run.counts;
  const settled = c.done + c.skipped + c.failed + c.unknown;
  const pct = c.planned > 0 ? Math.floor((settled * 100) / c.planned) : (run.ended ? 100 : 0);
  $('#run-status').innerHTML = `<span class="status ${esc(run.status)}">${esc(STATUS[run.status] || run.status)}</span>
    ${run.status_reason ? ` — ${esc(run.status_reason)}` : ''}`;
  const bar = $('#run-progress');
  bar.value = pct;
  bar.setAttribute('aria-valuetext', `${pct}% (${settled} de ${c.planned})`);
  $('#run-pct').textContent = `${pct}% — ${settled} de ${c.planned} registros`;
  $('#run-counts').innerHTML = runCounts(run);
  $('#run-finished').textContent = run.finished_at ? `Terminou em ${when(run.finished_at)}` : '';
  $('#cancel').hidden = run.ended;
  safetyRunPanel(run);
}
async function renderRun(id) {
  const { status, data: run } = await api('GET', `/api/v1/runs/${id}`);
  if (status === 404) { setPage('Execução', '<h1>Execução não encontrada</h1><p><a href="#/tarefas">Voltar para Tarefas</a></p>'); return; }
  const task = await api('GET', `/api/v1/tasks/${run.task_id}`);
  const name = task.status === 200 ? task.data.name : `tarefa ${run.task_id}`;
  setPage(`Execução ${id}`, `
    <h1>Execução ${id} — ${esc(name)}</h1>
    <p><a href="#/tarefas">← Tarefas</a> · ${run.trigger === 'manual' ? 'Executada à mão' : 'Agendada'} por ${esc(run.requested_by || '—')}, iniciada em ${when(run.started_at)} · <span id="run-version">versão ${esc(run.task_version)} da tarefa</span></p>
    <section class="card" aria-labelledby="progress-label">
      <h2 id="progress-label">Progresso</h2>
      <div aria-live="polite" aria-atomic="true">
        <p>Status: <span id="run-status"></span></p>
        <p id="run-pct"></p>
      </div>
      <progress id="run-progress" max="100" value="0" aria-labelledby="progress-label"></progress>
      <div id="run-counts"></div>
      <p id="run-finished"></p>
      <button type="button" id="cancel" class="danger">Cancelar execução</button>
    </section>`);
  showRun(run);
  $('#cancel').addEventListener('click', async () => {
    if (!confirm('Cancelar esta execução? Os registros pendentes serão ignorados.')) return;
    const r = await api('POST', `/api/v1/runs/${id}/cancel`);
    if (r.status === 200) showRun(r.data);
  });
  if (run.ended) return;
  await followRun(id, (r, event) => {
    showRun(r);
    if (event === 'end') announce(`Execução ${STATUS[r.status] || r.status}`);
  });
}
// Server-sent events read with fetch (so the token travels in a header, not in the URL).
async function followRun(id, onRun) {
  const signal = pageAbort.signal;
  while (!signal.aborted) {
    try {
      const r = await fetch(`/api/v1/runs/${id}/events`, { headers: { Authorization: `Bearer ${token()}` }, signal });
      if (!r.ok) return;
      const reader = r.body.getReader();
      const dec = new TextDecoder();
      let buf = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += dec.decode(value, { stream: true });
        let i;
        while ((i = buf.indexOf('\n\n')) >= 0) {
          const chunk = buf.slice(0, i);
          buf = buf.slice(i + 2);
          let event = 'message';
          let data = '';
          for (const line of chunk.split('\n')) {
            if (line.startsWith('event:')) event = line.slice(6).trim();
            else if (line.startsWith('data:')) data += line.slice(5).trim();
          }
          if (data) {
            const run = JSON.parse(data);
            onRun(run, event);
            if (event === 'end') return;
          }
        }
      }
    } catch (e) {
      if (e.name === 'AbortError') return;
    }
    await new Promise((res) => setTimeout(res, 1000)); // reconnect
  }
}

// ---------- the task form ----------
function newForm() {
  return {
    name: '', objective: '', mode: 'manual', kind: 'daily', n: '', starts_at: '', at: '', days: [], day: '',
    ends_on: '', expr: '', time_zone: 'America/Sao_Paulo', table: 'contacts',
    filter: { op: 'all', items: [] },
    action: { type: 'flow', project: '', flow: '', channel: '', variables: null, agent: '', department: '', tabulation: '', step: '',
      policy: { when_in_chat: 'skip', when_in_queue: 'skip', when_in_auto: 'skip' } },
    extra: {},
  };
}
function condFromJson(c) {
  let field = c.field || '';
  let key = '';
  if (field.startsWith('custom.')) { key = field.slice(7); field = 'custom.<key>'; }
  let value = c.value;
  let value2 = '';
  if (c.op === 'between' && Array.isArray(value)) { [value, value2] = value; }
  else if (Array.isArray(value)) value = value.join(', ');
  return { field, key, op: c.op || '', value: value ?? '', value2: value2 ?? '' };
}
function groupFromJson(f) {
  if (!f) return { op: 'all', items: [] };
  if (f.all || f.any) {
    const op = f.all ? 'all' : 'any';
    return { op, items: (f[op] || []).map((x) => (x.all || x.any ? groupFromJson(x) : condFromJson(x))) };
  }
  return { op: 'all', items: [condFromJson(f)] };
}
function formFromDefinition(d) {
  const f = newForm();
  f.name = d.name || '';
  f.objective = d.objective || '';
  f.time_zone = d.time_zone || 'America/Sao_Paulo';
  const r = d.recurrence || { kind: 'manual' };
  if (r.kind === 'manual') f.mode = 'manual';
  else {
    f.mode = 'auto'; f.kind = r.kind;
    f.n = r.n ?? ''; f.starts_at = (r.starts_at || '').slice(0, 16); f.at = r.at || '';
    f.days = r.days || []; f.day = r.day ?? ''; f.ends_on = r.ends_on || ''; f.expr = r.expr || '';
  }
  f.table = d.table || 'contacts';
  f.filter = groupFromJson(d.filter);
  const a = d.action || {};
  if (a.flow) {
    f.action.type = 'flow';
    f.action.project = a.flow.project ?? ''; f.action.flow = a.flow.flow ?? '';
    f.action.channel = a.flow.channel || ''; f.action.variables = a.flow.variables || null;
    Object.assign(f.action.policy, a.policy || {});
  } else if (a.chat) {
    const c = a.chat;
    const type = typeof c === 'string' ? c : Object.keys(c)[0];
    const arg = typeof c === 'string' ? {} : (c[type] || {});
    f.action.type = type;
    f.action.agent = arg.agent ?? ''; f.action.department = arg.department ?? '';
    f.action.tabulation = arg.tabulation ?? ''; f.action.step = arg.step ?? '';
  }
  if (d.version !== undefined) f.extra.version = d.version;
  return f;
}
function num(v) {
  const s = String(v ?? '').trim();
  if (s === '') return undefined;
  return /^-?\d+(\.\d+)?$/.test(s) ? Number(s) : s;
}
function fieldKind(table, field) {
  const f = (schema.tables[table] || []).find((x) => x.field === field);
  return f ? f.kind : 'text';
}
function condValue(table, c) {
  const kind = fieldKind(table, c.field);
  const conv = (v) => {
    const s = String(v ?? '').trim();
    if (kind === 'id') return num(s);
    if (kind === 'reference') return /^\d+$/.test(s) ? Number(s) : s;
    if (kind === 'custom' && ['gt', 'gte', 'lt', 'lte', 'between'].includes(c.op)) return num(s);
    return s;
  };
  if (['is_set', 'is_not_set'].includes(c.op)) return undefined;
  if (['in', 'not_in'].includes(c.op)) {
    return String(c.value ?? '').split(',').map((x) => x.trim()).filter((x) => x !== '').map(conv);
  }
  if (c.op === 'between') return [conv(c.value), conv(c.value2)];
  return conv(c.value);
}
function groupToJson(table, g) {
  return {
    [g.op]: g.items.map((x) => {
      if (x.items) return groupToJson(table, x);
      const out = { field: x.field === 'custom.<key>' ? `custom.${x.key}` : x.field, op: x.op };
      const v = condValue(table, x);
      if (v !== undefined) out.value = v;
      return out;
    }),
  };
}
function formToDefinition(f) {
  const d = { ...f.extra, name: f.name };
  if (f.objective.trim() !== '') d.objective = f.objective;
  d.time_zone = f.time_zone;
  if (f.mode === 'manual') d.recurrence = { kind: 'manual' };
  else {
    const r = { kind: f.kind };
    if (['every_minutes', 'every_hours'].includes(f.kind)) {
      r.n = num(f.n);
      if (f.starts_at) r.starts_at = f.starts_at;
    }
    if (['daily', 'weekdays', 'month_day'].includes(f.kind)) r.at = f.at;
    if (f.kind === 'weekdays') r.days = f.days;
    if (f.kind === 'month_day') r.day = num(f.day);
    if (f.kind === 'cron') r.expr = f.expr;
    if (f.ends_on) r.ends_on = f.ends_on;
    for (const k of Object.keys(r)) if (r[k] === undefined) delete r[k];
    d.recurrence = r;
  }
  d.table = f.table;
  if (f.filter.items.length > 0) d.filter = groupToJson(f.table, f.filter);
  const a = f.action;
  if (a.type === 'flow' || f.table === 'contacts') {
    const flow = { project: num(a.project), flow: num(a.flow) };
    if (f.table === 'contacts') flow.channel = a.channel.trim();
    if (a.variables) flow.variables = a.variables;
    for (const k of Object.keys(flow)) if (flow[k] === undefined) delete flow[k];
    d.action = { flow, policy: { ...a.policy } };
  } else {
    const t = a.type;
    let chat;
    if (t === 'transfer_to_agent') chat = { transfer_to_agent: { agent: num(a.agent) } };
    else if (t === 'change_department') chat = { change_department: { department: num(a.department) } };
    else if (t === 'update_workflow') chat = { update_workflow: { step: num(a.step) } };
    else if (t === 'update_tabulation') chat = { update_tabulation: { tabulation: String(a.tabulation).trim() } };
    else if (t === 'close' && String(a.tabulation).trim() !== '') chat = { close: { tabulation: String(a.tabulation).trim() } };
    else chat = t;
    d.action = { chat };
  }
  return d;
}
function draftSegment(f) {
  const d = { time_zone: f.time_zone, table: f.table };
  if (f.filter.items.length > 0) d.filter = groupToJson(f.table, f.filter);
  return d;
}

let uid = 0;
const nextId = (p) => `${p}-${++uid}`;

function valueInputs(table, c, path) {
  const kind = fieldKind(table, c.field);
  const op = c.op;
  if (!op || ['is_set', 'is_not_set'].includes(op)) return '';
  const id = nextId('v');
  const dateOps = ['on', 'before', 'after', 'between'];
  let type = 'text';
  let hint = '';
  if (kind === 'datetime' && dateOps.includes(op)) type = 'date';
  if (kind === 'custom' && ['on', 'before', 'after'].includes(op)) type = 'date';
  if (kind === 'id' && !['in', 'not_in'].includes(op)) type = 'number';
  if (['within_last', 'more_than_ago'].includes(op)) hint = 'ex.: 30m, 6h, 7d';
  if (['in', 'not_in'].includes(op)) hint = 'separe os valores por vírgula';
  if (kind === 'reference') hint = hint || 'nome ou id';
  if (kind === 'enum') {
    const opts = Object.entries(SITUATIONS).map(([k, v]) => `<option value="${k}" ${c.value === k ? 'selected' : ''}>${v}</option>`).join('');
    if (!['in', 'not_in'].includes(op)) {
      return `<div><label for="${id}">Valor</label><select id="${id}" data-bind="value" data-path="${path}.value"><option value="">—</option>${opts}</select></div>`;
    }
    hint = 'wait_for_chat, auto, in_chat';
  }
  const one = (bind, label, val, p) => {
    const i = nextId('v');
    return `<div><label for="${i}">${label}</label><input id="${i}" type="${type}" data-bind="${bind}" data-path="${p}" value="${esc(val)}" ${hint ? `placeholder="${esc(hint)}"` : ''}></div>`;
  };
  if (op === 'between') {
    return one('value', 'De', c.value, `${path}.value`) + one('value2', 'Até', c.value2, `${path}.value`);
  }
  return one('value', 'Valor', c.value, `${path}.value`);
}
function condHtml(table, c, path, depth) {
  const fields = schema.tables[table] || [];
  const fid = nextId('f');
  const oid = nextId('o');
  const kid = nextId('k');
  const ops = (fields.find((x) => x.field === c.field) || { operators: [] }).operators;
  return `<div class="cond" data-node="${path}" data-path="${path}" role="group" aria-label="Condição">
    <div><label for="${fid}">Campo</label><select id="${fid}" data-bind="field" data-path="${path}.field">
      <option value="">— escolha —</option>
      ${fields.map((x) => `<option value="${esc(x.field)}" ${x.field === c.field ? 'selected' : ''}>${esc(FIELDS[x.field] || x.field)}</option>`).join('')}
    </select></div>
    ${c.field === 'custom.<key>' ? `<div><label for="${kid}">Chave do campo</label><input id="${kid}" type="text" data-bind="key" data-path="${path}.field" value="${esc(c.key)}" style="width:9rem"></div>` : ''}
    <div><label for="${oid}">Operador</label><select id="${oid}" data-bind="op" data-path="${path}.op" ${c.field ? '' : 'disabled'}>
      <option value="">— escolha —</option>
      ${ops.map((o) => `<option value="${o}" ${o === c.op ? 'selected' : ''}>${esc(OPS[o] || o)}</option>`).join('')}
    </select></div>
    ${valueInputs(table, c, path)}
    <button type="button" data-remove="${path}" aria-label="Remover condição">✕</button>
  </div>`;
}
function groupHtml(table, g, path, depth) {
  const word = g.op === 'all' ? 'E' : 'OU';
  const items = g.items.map((x, i) => {
    const p = `${path}.${g.op}[${i}]`;
    const joiner = i > 0 ? `<p class="joiner" aria-hidden="true">${word}</p>` : '';
    return joiner + (x.items ? groupHtml(table, x, p, depth + 1) : condHtml(table, x, p, depth));
  }).join('');
  const gid = nextId('g');
  return `<div class="group" data-node="${path}" data-path="${path}" role="group" aria-label="${depth === 0 ? 'Filtros' : 'Grupo de filtros'}">
    ${g.items.length > 1 || depth > 0 ? `<label class="inline" for="${gid}">Combinar:
      <select id="${gid}" data-groupop="${path}"><option value="all" ${g.op === 'all' ? 'selected' : ''}>todas as condições (E)</option>
      <option value="any" ${g.op === 'any' ? 'selected' : ''}>qualquer condição (OU)</option></select></label>` : ''}
    ${items || '<p class="hint">Sem filtros: todos os registros da tabela.</p>'}
    <div class="actions">
      <button type="button" data-add="all" data-group="${path}" aria-label="E+: adicionar condição (E)${depth ? ' neste grupo' : ''}">E+</button>
      <button type="button" data-add="any" data-group="${path}" aria-label="OU+: adicionar condição (OU)${depth ? ' neste grupo' : ''}">OU+</button>
    </div>
  </div>`;
}
// Finds the node of the filter model at a path like filter.all[1].any[0].
function nodeAt(f, path) {
  let node = f.filter;
  const re = /\.(all|any)\[(\d+)\]/g;
  let m;
  let parent = null;
  let index = -1;
  while ((m = re.exec(path.slice('filter'.length)))) {
    parent = node; index = Number(m[2]); node = node.items[index];
  }
  return { node, parent, index };
}
// E+ / OU+: on a group of one kind, adds a condition; pressing the other joiner on a group
// that already has two or more conditions nests the last one with the new one in a group of
// that kind (A E B, OU+ C → A E (B OU C)).
function addCondition(f, path, op) {
  const { node: g } = nodeAt(f, path);
  const c = { field: '', key: '', op: '', value: '', value2: '' };
  if (g.items.length < 2 || g.op === op) {
    g.op = op;
    g.items.push(c);
    return `${path}.${op}[${g.items.length - 1}]`;
  }
  const last = g.items.pop();
  g.items.push({ op, items: [last, c] });
  return `${path}.${g.op}[${g.items.length - 1}].${op}[1]`;
}
function removeNode(f, path) {
  const { parent, index } = nodeAt(f, path);
  if (!parent) return;
  parent.items.splice(index, 1);
  // A nested group left with nothing goes away; one left with one item is kept (harmless).
  const parentPath = path.replace(/\.(all|any)\[\d+\]$/, '');
  if (parent.items.length === 0 && parentPath !== 'filter') removeNode(f, parentPath);
}

function recurrenceHtml(f) {
  const k = f.kind;
  const show = (kinds) => (kinds.includes(k) ? '' : 'hidden');
  return `
  <fieldset data-path="recurrence">
    <legend>Recorrência</legend>
    <div class="inline" role="radiogroup" aria-label="Tipo de recorrência">
      <label><input type="radio" name="mode" value="manual" ${f.mode === 'manual' ? 'checked' : ''}> Manual</label>
      <label><input type="radio" name="mode" value="auto" ${f.mode === 'auto' ? 'checked' : ''}> Automática</label>
    </div>
    <p class="hint" ${f.mode === 'manual' ? '' : 'hidden'}>Roda apenas quando você clica em “Executar Tarefa”.</p>
    <div id="auto" ${f.mode === 'auto' ? '' : 'hidden'}>
      <div class="row">
        <div class="field"><label for="kind">Repetir</label>
          <select id="kind" data-path="recurrence.kind">${Object.entries(KINDS).map(([v, l]) => `<option value="${v}" ${v === k ? 'selected' : ''}>${l}</option>`).join('')}</select></div>
        <div class="field" ${show(['every_minutes', 'every_hours'])}><label for="n">A cada (${k === 'every_hours' ? 'horas' : 'minutos'})</label>
          <input id="n" type="number" min="1" data-path="recurrence.n" value="${esc(f.n)}" style="width:7rem"></div>
        <div class="field" ${show(['every_minutes', 'every_hours'])}><label for="starts_at">A partir de</label>
          <input id="starts_at" type="datetime-local" data-path="recurrence.starts_at" value="${esc(f.starts_at)}"></div>
        <div class="field" ${show(['month_day'])}><label for="day">Dia do mês</label>
          <input id="day" type="number" min="1" max="31" data-path="recurrence.day" value="${esc(f.day)}" style="width:6rem"></div>
        <div class="field" ${show(['daily', 'weekdays', 'month_day'])}><label for="at">Horário de execução</label>
          <input id="at" type="time" data-path="recurrence.at" value="${esc(f.at)}"></div>
        <div class="field" ${show(['cron'])}><label for="expr">Expressão cron</label>
          <input id="expr" type="text" data-path="recurrence.expr" value="${esc(f.expr)}" style="width:14rem"></div>
        <div class="field"><label for="ends_on">Data de término (opcional)</label>
          <input id="ends_on" type="date" data-path="recurrence.ends_on" value="${esc(f.ends_on)}"></div>
      </div>
      <fieldset ${show(['weekdays'])} data-path="recurrence.days"><legend>Dias da semana</legend>
        <div class="inline">${DAYS.map(([v, l]) => `<label><input type="checkbox" name="days" value="${v}" ${f.days.includes(v) ? 'checked' : ''}> ${l}</label>`).join('')}</div>
      </fieldset>
      <div class="field"><label for="time_zone">Fuso horário</label>
        <input id="time_zone" type="text" data-path="time_zone" value="${esc(f.time_zone)}" style="width:16rem"></div>
    </div>
  </fieldset>`;
}
function actionHtml(f) {
  const a = f.action;
  const chats = f.table === 'chats';
  const type = chats ? a.type : 'flow';
  const isFlow = type === 'flow';
  const opt = (v, l) => `<option value="${v}" ${v === type ? 'selected' : ''}>${l}</option>`;
  return `
  <fieldset data-path="action">
    <legend>Ação</legend>
    <div class="field"><label for="integration">Integração</label>
      <select id="integration"><option>Huggy</option></select></div>
    <div class="field"><label for="action-type">O que fazer com cada ${chats ? 'atendimento' : 'contato'}</label>
      <select id="action-type" data-path="action" ${chats ? '' : 'disabled aria-describedby="action-hint"'}>${
        chats ? Object.entries(CHAT_ACTIONS).map(([v, l]) => opt(v, l)).join('') : opt('flow', CHAT_ACTIONS.flow)}</select>
      ${chats ? '' : '<p class="hint" id="action-hint">Na Tabela de Contatos a ação é sempre um Flow; as ações de atendimento existem só na Tabela de Atendimentos.</p>'}</div>
    <div class="row" ${isFlow ? '' : 'hidden'}>
      <div class="field"><label for="project">Projeto</label><input id="project" type="number" data-path="action.flow.project" value="${esc(a.project)}" style="width:8rem"></div>
      <div class="field"><label for="flow">Flow</label><input id="flow" type="number" data-path="action.flow.flow" value="${esc(a.flow)}" style="width:8rem"></div>
      <div class="field" ${chats ? 'hidden' : ''}><label for="channel">Canal</label><input id="channel" type="text" data-path="action.flow.channel" value="${esc(a.channel)}" placeholder="uuid do canal de WhatsApp" style="width:22rem"></div>
    </div>
    ${chats && isFlow ? '<p class="hint">Nos atendimentos o Flow usa o canal do próprio atendimento.</p>' : ''}
    <div class="field" ${type === 'transfer_to_agent' ? '' : 'hidden'}><label for="agent">Agente (id)</label><input id="agent" type="number" data-path="action.chat.transfer_to_agent.agent" value="${esc(a.agent)}" style="width:8rem"></div>
    <div class="field" ${type === 'change_department' ? '' : 'hidden'}><label for="department">Departamento (id)</label><input id="department" type="number" data-path="action.chat.change_department.department" value="${esc(a.department)}" style="width:8rem"></div>
    <div class="field" ${type === 'update_workflow' ? '' : 'hidden'}><label for="step">Etapa do workflow (id)</label><input id="step" type="number" data-path="action.chat.update_workflow.step" value="${esc(a.step)}" style="width:8rem"></div>
    <div class="field" ${['close', 'update_tabulation'].includes(type) ? '' : 'hidden'}><label for="tabulation">Tabulação${type === 'close' ? ' (opcional)' : ''}</label>
      <input id="tabulation" type="text" data-path="action.chat.${type === 'close' ? 'close' : 'update_tabulation'}.tabulation" value="${esc(a.tabulation)}" style="width:10rem"></div>
    <details ${isFlow ? '' : 'hidden'} open>
      <summary>Configurações avançadas do Flow</summary>
      ${POLICY.map(([key, legend, choices]) => `
        <fieldset data-path="action.policy.${key}"><legend>${legend}</legend>
          ${choices.map(([v, l]) => `<label class="inline"><input type="radio" name="${key}" value="${v}" ${a.policy[key] === v ? 'checked' : ''}> ${l}</label>`).join('<br>')}
        </fieldset>`).join('')}
    </details>
  </fieldset>`;
}

async function renderForm(id) {
  await loadSchema();
  let f;
  let task = null;
  if (id) {
    const r = await api('GET', `/api/v1/tasks/${id}`);
    if (r.status === 404) { setPage('Tarefa', '<h1>Tarefa não encontrada</h1><p><a href="#/tarefas">Voltar para Tarefas</a></p>'); return; }
    task = r.data;
    f = formFromDefinition(task.definition);
  } else {
    f = newForm();
  }
  const title = id ? `Editar tarefa: ${task.name}` : 'Nova tarefa';
  setPage(title, `
    <h1>${esc(title)}</h1>
    <div id="summary"></div>
    <div class="form-grid">
      <form id="task-form" novalidate>
        <div id="form-body"></div>
        <div class="actions">
          <button class="primary" type="submit">Salvar</button>
          ${id ? '<button type="button" id="run-now">Executar Tarefa</button>' : ''}
          <a class="button" href="#/tarefas">Cancelar</a>
        </div>
      </form>
      <aside class="card count" aria-labelledby="count-title">
        <h2 id="count-title">Registros encontrados</h2>
        <div aria-live="polite" aria-atomic="true" id="count-region">
          <p class="n" id="count">—</p><p class="hint" id="count-hint"></p>
        </div>
        <ul id="sample" aria-label="Primeiros registros"></ul>
      </aside>
    </div>`);
  const body = $('#form-body');
  const render = (focusPath) => {
    body.innerHTML = `
      <div class="card">
        <div class="field"><label for="name">Nome da tarefa</label><input id="name" type="text" data-path="name" value="${esc(f.name)}" required></div>
        <div class="field"><label for="objective">Objetivo</label><textarea id="objective" data-path="objective">${esc(f.objective)}</textarea></div>
      </div>
      ${recurrenceHtml(f)}
      <fieldset data-path="table"><legend>Tabela</legend>
        <div class="inline">
          <label><input type="radio" name="table" value="contacts" ${f.table === 'contacts' ? 'checked' : ''}> Tabela de Contatos</label>
          <label><input type="radio" name="table" value="chats" ${f.table === 'chats' ? 'checked' : ''}> Tabela de Atendimentos</label>
        </div>
        <p class="hint">${f.table === 'chats' ? 'Somente atendimentos na fila, no automático ou em atendimento.' : ''}</p>
      </fieldset>
      <fieldset data-path="filter"><legend>Filtros</legend>
        <p class="hint">Use E+ para exigir todas as condições e OU+ para aceitar qualquer uma.</p>
        ${groupHtml(f.table, f.filter, 'filter', 0)}
      </fieldset>
      ${actionHtml(f)}`;
    if (focusPath) {
      const el = body.querySelector(`[data-path="${CSS.escape(focusPath)}"]`);
      if (el) el.focus();
    }
  };
  render();
  let timer = null;
  let seq = 0;
  const countEl = $('#count');
  const count = () => {
    clearTimeout(timer);
    timer = setTimeout(async () => {
      const mine = ++seq;
      if (!document.body.contains(countEl)) return;
      $('#count-hint').textContent = 'Contando…';
      let r;
      try { r = await api('POST', '/api/v1/preview?limit=5', draftSegment(f)); } catch (_) { return; }
      if (mine !== seq || !document.body.contains(countEl)) return;
      if (r.status === 200) {
        $('#count').textContent = r.data.count.toLocaleString('pt-BR');
        $('#count-hint').textContent = `${f.table === 'chats' ? 'atendimentos' : 'contatos'} correspondem agora`;
        $('#sample').innerHTML = r.data.sample.map((s) => `<li>${esc(s.name || s.department || `#${s.id}`)} <small>(${s.id})</small></li>`).join('');
      } else {
        $('#count').textContent = '—';
        $('#count-hint').textContent = `Complete o filtro: ${(r.data?.problems || []).map((p) => p.message).join('; ') || r.data?.error || ''}`;
        $('#sample').innerHTML = '';
      }
    }, 350);
  };
  count();
  const onChange = (ev) => {
    const t = ev.target;
    let rerender = false;
    let focus = null;
    if (t.name === 'mode') { f.mode = t.value; rerender = true; focus = null; }
    else if (t.id === 'kind') { f.kind = t.value; rerender = true; focus = 'recurrence.kind'; }
    else if (t.name === 'days') { f.days = [...body.querySelectorAll('input[name=days]:checked')].map((x) => x.value); }
    else if (t.name === 'table') {
      f.table = t.value; f.filter = { op: 'all', items: [] };
      if (f.table === 'contacts') f.action.type = 'flow';
      rerender = true;
    } else if (t.id === 'action-type') { f.action.type = t.value; rerender = true; focus = 'action'; }
    else if (POLICY.some(([k]) => k === t.name)) f.action.policy[t.name] = t.value;
    else if (t.dataset.groupop) {
      nodeAt(f, t.dataset.groupop).node.op = t.value; rerender = true; focus = null;
    } else if (t.dataset.bind) {
      const path = t.closest('.cond').dataset.node;
      const c = nodeAt(f, path).node;
      c[t.dataset.bind] = t.value;
      if (t.dataset.bind === 'field') { c.op = ''; c.value = ''; c.value2 = ''; rerender = true; focus = `${path}.field`; }
      if (t.dataset.bind === 'op') { rerender = true; focus = `${path}.op`; }
    } else if (['name', 'objective', 'n', 'starts_at', 'day', 'at', 'expr', 'ends_on', 'time_zone'].includes(t.id)) f[t.id] = t.value;
    else if (['project', 'flow', 'channel', 'agent', 'department', 'step', 'tabulation'].includes(t.id)) f.action[t.id] = t.value;
    if (rerender) render(focus);
    if (t.closest('[data-path^="filter"]') || t.name === 'table' || t.id === 'time_zone') count();
  };
  body.addEventListener('input', (ev) => { if (ev.target.matches('input[type=text], input[type=number], textarea, input[type=date], input[type=time], input[type=datetime-local]')) onChange(ev); });
  body.addEventListener('change', onChange);
  body.addEventListener('click', (ev) => {
    const b = ev.target.closest('button');
    if (!b) return;
    if (b.dataset.add) { const p = addCondition(f, b.dataset.group, b.dataset.add); render(`${p}.field`); count(); }
    if (b.dataset.remove) { removeNode(f, b.dataset.remove); render(); $('[data-path="filter"] .group button', body)?.focus(); count(); }
  });
  $('#task-form').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    clearErrors();
    const def = formToDefinition(f);
    const r = id ? await api('PUT', `/api/v1/tasks/${id}`, def) : await api('POST', '/api/v1/tasks', def);
    if (r.status === 200 || r.status === 201) {
      announce('Tarefa salva');
      location.hash = '#/tarefas';
      return;
    }
    if (r.status === 422) showProblems(r.data.problems);
    else showProblems([{ path: '', message: r.data?.error || `erro ${r.status}` }]);
  });
  if (id) $('#run-now').addEventListener('click', (ev) => executeTask(id, ev.target));
}

// ---------- errors beside their fields ----------
function clearErrors() {
  $('#summary').innerHTML = '';
  document.querySelectorAll('.error[data-for]').forEach((e) => e.remove());
  document.querySelectorAll('[aria-invalid]').forEach((e) => { e.removeAttribute('aria-invalid'); e.removeAttribute('aria-describedby'); });
}
function elementFor(path) {
  let p = path;
  for (;;) {
    const el = document.querySelector(`#form-body [data-path="${CSS.escape(p)}"]`);
    if (el && el.offsetParent !== null) return el;
    const shorter = p.replace(/(\.[^.[\]]+|\[\d+\])$/, '');
    if (shorter === p || shorter === '') return null;
    p = shorter;
  }
}
function showProblems(problems) {
  const items = [];
  for (const pr of problems) {
    const el = pr.path ? elementFor(pr.path) : null;
    const eid = nextId('err');
    if (el) {
      const msg = document.createElement('p');
      msg.className = 'error';
      msg.id = eid;
      msg.dataset.for = pr.path;
      msg.textContent = pr.message;
      if (['FIELDSET', 'DIV'].includes(el.tagName)) {
        const anchor = el.tagName === 'FIELDSET' ? el.querySelector('legend') : null;
        if (anchor) anchor.after(msg); else el.append(msg);
        const first = el.querySelector('input, select, textarea');
        if (el.tagName === 'DIV' && first) { first.setAttribute('aria-invalid', 'true'); first.setAttribute('aria-describedby', eid); }
      } else {
        el.after(msg);
        el.setAttribute('aria-invalid', 'true');
        el.setAttribute('aria-describedby', eid);
      }
    }
    items.push(`<li>${el ? `<a href="#" data-focus="${esc(eid)}">${esc(pr.path)}</a>: ` : (pr.path ? `${esc(pr.path)}: ` : '')}${esc(pr.message)}</li>`);
  }
  $('#summary').innerHTML = `<div class="summary" role="alert" tabindex="-1"><strong>Corrija ${problems.length === 1 ? 'o problema' : `os ${problems.length} problemas`} para salvar:</strong><ul>${items.join('')}</ul></div>`;
  $('#summary').addEventListener('click', (ev) => {
    const a = ev.target.closest('a[data-focus]');
    if (!a) return;
    ev.preventDefault();
    const msg = document.getElementById(a.dataset.focus);
    const target = document.querySelector(`[aria-describedby="${a.dataset.focus}"]`) || msg;
    target.scrollIntoView({ block: 'center' });
    if (target.focus) { if (!target.matches('input, select, textarea, button')) target.tabIndex = -1; target.focus(); }
  });
  $('.summary').focus();
}

window.addEventListener('unhandledrejection', (ev) => {
  if (ev.reason && (ev.reason.name === 'AbortError' || ev.reason.message === 'não autorizado')) ev.preventDefault();
});
window.addEventListener('hashchange', route);
route();
