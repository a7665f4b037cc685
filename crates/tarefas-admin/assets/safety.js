// Tarefas console, campaign safety: "Simular" (dry run), the run page's records with a
// filter by outcome and CSV export, "Aprovar envio", "Reenviar falhas", the wait for the
// send window, and the opt-out list page ("Descadastros") with CSV import. Loaded after
// app.js and uses its helpers (api, esc, when, setPage, announce, token, STATUS).
'use strict';

const OUTCOMES = {
  pending: 'Pendente', sending: 'Enviando', done: 'Enviado', skipped: 'Ignorado',
  failed: 'Falhou', unknown: 'Incerto',
};
STATUS.awaiting_approval = 'Aguardando aprovação';

// "Executar Tarefa" asks first, with the number of records the segment matches now.
async function confirmExecute(id) {
  const p = await api('GET', `/api/v1/tasks/${id}/preview?limit=0`);
  const n = p.status === 200 ? p.data.count : null;
  const what = n === null ? 'os registros do segmento' : `${n} ${n === 1 ? 'registro' : 'registros'}`;
  return confirm(`Executar Tarefa agora para ${what}? Cada um recebe a ação uma vez.`);
}

// "Simular": what each record would get; Huggy is not called.
async function renderDryRun(id) {
  setPage('Simular', `<h1>Simular tarefa ${id}</h1><p role="status">Simulando…</p>`);
  const r = await api('POST', `/api/v1/tasks/${id}/dry-run`);
  if (r.status !== 200) { view().innerHTML = `<h1>Simular</h1><p role="alert">${esc(r.data?.error || 'Não foi possível simular.')}</p>`; return; }
  const d = r.data;
  const reasons = Object.entries(d.skipped).map(([k, n]) => `<li><strong>${n}</strong> ignorados — ${esc(k)}</li>`).join('');
  const rows = d.records.slice(0, 500).map((x) => `<tr><td>${x.id}</td><td>${x.outcome === 'call' ? 'Enviaria' : 'Ignoraria'}</td><td>${esc(x.reason || '')}</td></tr>`).join('');
  setPage('Simular', `<h1>Simulação da tarefa ${id}</h1>
    <p><a href="#/tarefas">← Tarefas</a> · Nenhuma chamada foi feita à Huggy.</p>
    <section class="card" id="dry-run">
      <p><strong data-dry="count">${d.count}</strong> registros; <strong data-dry="would_call">${d.would_call}</strong> receberiam a ação.</p>
      <ul>${reasons}</ul>
      ${d.max_records !== null && d.count > d.max_records ? `<p role="note">Mais que o limite de ${d.max_records} registros: a execução aguardaria aprovação.</p>` : ''}
      ${d.window_opens_at ? `<p role="note">Fora da janela de envio: as chamadas aguardariam até ${when(d.window_opens_at)}.</p>` : ''}
    </section>
    <table><caption>Registros${d.records.length > 500 ? ' (os primeiros 500)' : ''}</caption>
      <thead><tr><th scope="col">Registro</th><th scope="col">Resultado</th><th scope="col">Motivo</th></tr></thead>
      <tbody>${rows}</tbody></table>`);
}

// The run page's extra section: held for approval, waiting for the window, retry, records.
async function safetyRunPanel(run) {
  const main = view();
  let panel = $('#run-safety', main);
  if (!panel) {
    panel = document.createElement('section');
    panel.id = 'run-safety';
    panel.className = 'card';
    panel.setAttribute('aria-labelledby', 'records-title');
    main.appendChild(panel);
    panel.innerHTML = `<p id="run-waiting" role="status"></p>
      <div class="actions">
        <button type="button" id="approve" class="primary" hidden>Aprovar envio</button>
        <button type="button" id="retry-failed" hidden>Reenviar falhas</button>
      </div>
      <h2 id="records-title">Registros</h2>
      <div class="bar">
        <label>Resultado <select id="outcome-filter"><option value="">Todos</option>
          ${Object.entries(OUTCOMES).map(([k, v]) => `<option value="${k}">${v}</option>`).join('')}</select></label>
        <button type="button" id="export-csv">Exportar CSV</button>
      </div>
      <div id="records"></div>`;
    $('#approve', panel).addEventListener('click', async () => {
      if (!confirm(`Aprovar o envio para ${run.counts.planned} registros?`)) return;
      const r = await api('POST', `/api/v1/runs/${run.id}/approve`);
      if (r.status === 200) { announce('Envio aprovado'); route(); } else alert(r.data?.error || 'Não foi possível aprovar.');
    });
    $('#retry-failed', panel).addEventListener('click', async () => {
      if (!confirm(`Reenviar para os ${run.counts.failed} registros que falharam?`)) return;
      const r = await api('POST', `/api/v1/runs/${run.id}/retry-failed`);
      if (r.status === 202) location.hash = `#/pedidos/${encodeURIComponent(r.data.request_id)}`;
      else alert(r.data?.error || 'Não foi possível reenviar.');
    });
    $('#outcome-filter', panel).addEventListener('change', () => loadRecords(run.id));
    $('#export-csv', panel).addEventListener('click', async () => {
      const o = $('#outcome-filter').value;
      const r = await fetch(`/api/v1/runs/${run.id}/items?format=csv${o ? `&outcome=${o}` : ''}`, { headers: { Authorization: `Bearer ${token()}` } });
      const a = document.createElement('a');
      a.href = URL.createObjectURL(await r.blob());
      a.download = `execucao-${run.id}.csv`;
      a.click();
    });
    loadRecords(run.id);
  }
  $('#approve', panel).hidden = run.status !== 'awaiting_approval';
  $('#retry-failed', panel).hidden = !(run.ended && run.counts.failed > 0);
  // Progress events carry no `waiting`: the label stands until the page is read again.
  if ('waiting' in run) {
    $('#run-waiting', panel).textContent = run.waiting
      ? `${run.waiting} — abre em ${when(run.window_opens_at)}` : '';
  }
}
async function loadRecords(runId) {
  const o = $('#outcome-filter')?.value || '';
  const r = await api('GET', `/api/v1/runs/${runId}/items${o ? `?outcome=${o}` : ''}`);
  if (r.status !== 200) return;
  const rows = r.data.slice(0, 1000).map((x) => `<tr data-outcome="${esc(x.outcome)}"><td>${x.id}</td>
    <td>${esc(OUTCOMES[x.outcome] || x.outcome)}</td><td>${esc(x.reason || '')}</td><td>${when(x.time)}</td></tr>`).join('');
  $('#records').innerHTML = `<table><caption class="visually-hidden">Registros da execução</caption>
    <thead><tr><th scope="col">Registro</th><th scope="col">Resultado</th><th scope="col">Motivo</th><th scope="col">Quando</th></tr></thead>
    <tbody>${rows}</tbody></table>${r.data.length > 1000 ? '<p>Mostrando os primeiros 1000; exporte o CSV para ver todos.</p>' : ''}`;
}

// "Descadastros": the account's opt-out list.
async function renderOptOuts() {
  const r = await api('GET', '/api/v1/suppressions');
  const rows = (r.data || []).map((s) => `<tr><td>${s.contact_id}</td><td>${esc(s.source)}</td><td>${when(s.added_at)}</td>
    <td><button type="button" data-remove="${s.contact_id}">Remover</button></td></tr>`).join('');
  setPage('Descadastros', `<h1>Descadastros</h1>
    <p>Nenhum Flow é iniciado para estes contatos, em nenhuma tarefa. Uma mensagem recebida que seja só SAIR, PARAR, STOP ou CANCELAR também descadastra o contato.</p>
    <form id="optout-add" class="card"><label>Ids de contatos (separados por vírgula) <input id="optout-ids" required></label>
      <button class="primary" type="submit">Adicionar</button></form>
    <form id="optout-import" class="card"><label>Importar CSV (coluna contact_id) <input type="file" id="optout-file" accept=".csv,text/csv" required></label>
      <button type="submit">Importar</button><p id="optout-msg" role="status"></p></form>
    <table><caption>Contatos descadastrados (${(r.data || []).length})</caption>
      <thead><tr><th scope="col">Contato</th><th scope="col">Origem</th><th scope="col">Quando</th><th scope="col">Ações</th></tr></thead>
      <tbody id="optout-rows">${rows}</tbody></table>`);
  $('#optout-add').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const ids = $('#optout-ids').value.split(/[\s,;]+/).filter(Boolean).map(Number);
    const x = await api('POST', '/api/v1/suppressions', { contact_ids: ids });
    if (x.status === 200) { announce(`${x.data.changed} contatos descadastrados`); route(); } else $('#optout-msg').textContent = x.data?.error || 'Ids inválidos';
  });
  $('#optout-import').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const file = $('#optout-file').files[0];
    const x = await fetch('/api/v1/suppressions/import', { method: 'POST', headers: { Authorization: `Bearer ${token()}`, 'Content-Type': 'text/csv' }, body: await file.text() });
    const data = await x.json().catch(() => null);
    if (x.status === 200) { announce(`${data.changed} contatos importados`); route(); }
    else $('#optout-msg').textContent = (data?.problems || []).map((p) => p.message).join('; ') || data?.error || 'CSV inválido';
  });
  $('#optout-rows').addEventListener('click', async (ev) => {
    const b = ev.target.closest('button[data-remove]');
    if (!b) return;
    await api('POST', '/api/v1/suppressions/remove', { contact_ids: [Number(b.dataset.remove)] });
    route();
  });
}
