// The help article's steps in the Tarefas web console, in a real headless Chromium:
// sign in, "+ Adicionar" the article's two example tasks through the form (errors shown
// beside their fields first), see the live count, "Salvar", "Executar Tarefa", and follow
// the run page until the run ends against the fake Huggy. run.sh starts the stack and sets
// TAREFAS_CONSOLE_URL, TAREFAS_TOKEN, TAREFAS_ARTIFACTS and TAREFAS_CHROMIUM.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const BASE = process.env.TAREFAS_CONSOLE_URL;
const TOKEN = process.env.TAREFAS_TOKEN;
const ARTIFACTS = process.env.TAREFAS_ARTIFACTS || 'artifacts';
const CHROMIUM = process.env.TAREFAS_CHROMIUM || '/usr/bin/chromium';
assert.ok(BASE && TOKEN, 'run me through tests/browser/run.sh');
mkdirSync(ARTIFACTS, { recursive: true });

let context;
let page;
let profile;
let shot = 0;

async function screenshot(name) {
  shot += 1;
  await page.screenshot({ path: join(ARTIFACTS, `${String(shot).padStart(2, '0')}-${name}.png`), fullPage: true });
}
async function waitText(selector, re, timeout = 15000) {
  await page.waitForFunction(
    ([s, src]) => { const el = document.querySelector(s); return el && new RegExp(src).test(el.textContent); },
    [selector, re.source],
    { timeout },
  );
  return page.textContent(selector);
}

before(async () => {
  profile = mkdtempSync(join(tmpdir(), 'tarefas-chromium-'));
  context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    viewport: { width: 1366, height: 900 },
    locale: 'pt-BR',
    timezoneId: 'America/Sao_Paulo',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  context.setDefaultTimeout(15000);
  page = context.pages()[0] || await context.newPage();
  page.on('dialog', (d) => d.accept());
  page.on('pageerror', (e) => { console.error('page error:', e); });
});

after(async () => {
  if (page && !page.isClosed()) await screenshot('last').catch(() => {});
  await context?.close();
  if (profile) rmSync(profile, { recursive: true, force: true });
});

test('sign in: a wrong token is refused beside its field, the right one opens Tarefas', async () => {
  await page.goto(`${BASE}/`);
  await page.waitForSelector('#token');
  await page.getByLabel('Token de acesso').fill('tarefas_errado');
  await page.getByRole('button', { name: 'Entrar' }).click();
  await waitText('#login-error', /inválido/);
  assert.equal(await page.getAttribute('#token', 'aria-invalid'), 'true');
  await screenshot('entrar-token-invalido');
  await page.getByLabel('Token de acesso').fill(TOKEN);
  await page.getByRole('button', { name: 'Entrar' }).click();
  await page.waitForSelector('a:has-text("+ Adicionar")');
  assert.equal(await waitText('#who-account', /\S/), 'demo');
  await screenshot('tarefas-vazia');
});

async function condition(i, field, op, value) {
  const row = page.locator('.cond').nth(i);
  await row.getByLabel('Campo', { exact: true }).selectOption({ label: field });
  await row.getByLabel('Operador').selectOption({ label: op });
  await row.getByLabel('Valor').fill(value);
}
async function liveCount() {
  const text = await waitText('#count', /\d/);
  return Number(text.replace(/\D/g, ''));
}

test('+ Adicionar: created on a date E+ organization Rotik, errors beside fields, Salvar', async () => {
  await page.getByRole('link', { name: '+ Adicionar' }).click();
  await page.waitForSelector('h1:has-text("Nova tarefa")');
  await page.getByLabel('Nome da tarefa').fill('Boas-vindas Rotik');
  await page.getByLabel('Objetivo').fill('Dar boas-vindas aos contatos da Rotik criados no último dia do ano');
  await page.getByLabel('Manual').check();
  await page.getByLabel('Tabela de Contatos').check();
  const whole = await liveCount();
  assert.equal(whole, 400, 'no filter: the whole contacts table');
  await page.getByRole('button', { name: /^E\+/ }).click();
  // The new condition's field has the focus (keyboard users continue from there).
  assert.equal(await page.evaluate(() => document.activeElement.closest('.cond') !== null), true);
  // Only the contacts table's fields are offered.
  const fields = await page.locator('.cond').nth(0).getByLabel('Campo', { exact: true }).locator('option').allTextContents();
  assert.ok(fields.includes('Organização') && !fields.includes('Departamento'), fields.join(','));
  await condition(0, 'Data de criação', 'no dia', '2025-12-31');
  await page.getByRole('button', { name: /^E\+/ }).click();
  await condition(1, 'Organização', 'é igual a', 'Rotik');
  await page.waitForFunction((w) => { const n = Number(document.querySelector('#count').textContent.replace(/\D/g, '')); return n > 0 && n < w; }, whole);
  const n = await liveCount();
  assert.ok(n >= 1 && n < whole, `count ${n}`);
  await page.getByLabel('Projeto').fill('3');
  await page.getByLabel('Flow', { exact: true }).fill('42');
  await screenshot('nova-tarefa-rotik');
  // Salvar without the channel: the problem is shown beside the Canal field.
  await page.getByRole('button', { name: 'Salvar' }).click();
  await page.waitForSelector('.summary');
  assert.equal(await page.getAttribute('#channel', 'aria-invalid'), 'true');
  const described = await page.getAttribute('#channel', 'aria-describedby');
  assert.match(await page.textContent(`#${described}`), /channel|canal/i);
  await screenshot('erros-ao-lado-dos-campos');
  await page.getByLabel('Canal').fill('5f0c3a52-7d1e-4c8b-9a2f-0b6e4d3c2a11');
  await page.getByRole('group', { name: 'Quando o contato estiver em um atendimento automático (chatbot)' }).getByLabel('Executar o Flow e manter o atendimento no automático').check();
  await page.getByRole('button', { name: 'Salvar' }).click();
  await page.waitForSelector('tr:has-text("Boas-vindas Rotik")');
  const row = page.locator('tr', { hasText: 'Boas-vindas Rotik' });
  assert.match(await row.textContent(), /Manual/);
  assert.match(await row.textContent(), /Contatos/);
  assert.match(await row.textContent(), /Ativa/);
});

test('+ Adicionar: chats created on 31/12 OU+ department Suporte, Flow with advanced settings', async () => {
  await page.getByRole('link', { name: '+ Adicionar' }).click();
  await page.waitForSelector('h1:has-text("Nova tarefa")');
  await page.getByLabel('Nome da tarefa').fill('Pesquisa de satisfação');
  await page.getByLabel('Objetivo').fill('Enviar a pesquisa aos atendimentos do Suporte');
  await page.getByLabel('Tabela de Atendimentos').check();
  await page.getByRole('button', { name: /^E\+/ }).click();
  const fields = await page.locator('.cond').nth(0).getByLabel('Campo', { exact: true }).locator('option').allTextContents();
  assert.ok(fields.includes('Departamento') && !fields.includes('Organização'), fields.join(','));
  await condition(0, 'Data de criação', 'no dia', '2025-12-31');
  await page.getByRole('button', { name: /^OU\+/ }).click();
  await condition(1, 'Departamento', 'é igual a', 'Suporte');
  assert.match(await page.textContent('[data-path="filter"] .joiner'), /OU/);
  const n = await liveCount();
  assert.ok(n >= 1, `count ${n}`);
  // On Atendimentos the Flow has no Canal, and the seven chat actions are offered.
  assert.equal(await page.isVisible('#channel'), false);
  const actions = await page.getByLabel(/O que fazer com cada atendimento/).locator('option').allTextContents();
  assert.equal(actions.length, 8, actions.join(','));
  await page.getByLabel(/O que fazer com cada atendimento/).selectOption({ label: 'Iniciar um Flow' });
  await page.getByLabel('Projeto').fill('3');
  await page.getByLabel('Flow', { exact: true }).fill('77');
  await page.getByLabel('Executar o Flow e remover o agente do atendimento').check();
  await page.getByLabel('Abortar o Flow atual e iniciar este').check();
  await page.getByLabel('Executar o Flow e manter o atendimento no automático').check();
  await screenshot('nova-tarefa-suporte');
  await page.getByRole('button', { name: 'Salvar' }).click();
  await page.waitForSelector('tr:has-text("Pesquisa de satisfação")');
  assert.match(await page.locator('tr', { hasText: 'Pesquisa de satisfação' }).textContent(), /Atendimentos/);
  await screenshot('lista-com-as-duas-tarefas');
});

test('edit: the saved definition comes back into the form, and a change is saved', async () => {
  await page.getByRole('link', { name: 'Editar Boas-vindas Rotik' }).click();
  await page.waitForSelector('h1:has-text("Editar tarefa")');
  assert.equal(await page.inputValue('#name'), 'Boas-vindas Rotik');
  assert.equal(await page.locator('.cond').count(), 2);
  assert.equal(await page.locator('.cond').nth(1).getByLabel('Valor').inputValue(), 'Rotik');
  assert.equal(await page.inputValue('#channel'), '5f0c3a52-7d1e-4c8b-9a2f-0b6e4d3c2a11');
  await liveCount();
  await screenshot('editar-tarefa');
  await page.getByLabel('Automática').check();
  await page.getByLabel('Repetir').selectOption({ label: 'todos os dias' });
  await page.getByLabel('Horário de execução').fill('09:30');
  await page.getByRole('button', { name: 'Salvar' }).click();
  await page.waitForSelector('tr:has-text("Todos os dias às 09:30")');
  // Back to manual, so the schedule does not fire during the test.
  await page.getByRole('link', { name: 'Editar Boas-vindas Rotik' }).click();
  await page.waitForSelector('h1:has-text("Editar tarefa")');
  await page.getByLabel('Manual').check();
  await page.getByRole('button', { name: 'Salvar' }).click();
  await page.waitForSelector('tr:has-text("Boas-vindas Rotik"):has-text("Manual")');
});

async function executeAndFollow(name) {
  await page.getByRole('button', { name: `Executar Tarefa ${name}` }).click();
  await page.waitForURL(/#\/execucoes\/\d+$/, { timeout: 60000 });
  await page.waitForSelector('#run-status');
  await screenshot(`execucao-${name.split(' ')[0].toLowerCase()}-em-andamento`);
  const status = await waitText('#run-status', /Concluída|Falhou|Cancelada/, 120000);
  const counts = Object.fromEntries(await page.$$eval('[data-count]', (els) => els.map((e) => [e.dataset.count, Number(e.textContent)])));
  assert.equal(await page.getAttribute('#run-progress', 'value'), '100');
  assert.equal(await page.isVisible('#cancel'), false);
  await screenshot(`execucao-${name.split(' ')[0].toLowerCase()}-concluida`);
  return { status: status.trim(), counts };
}

test('Executar Tarefa: the Rotik run reaches its end live, every record sent', async () => {
  await page.goto(`${BASE}/#/tarefas`);
  const { status, counts } = await executeAndFollow('Boas-vindas Rotik');
  assert.match(status, /^Concluída$/);
  // Created, then saved twice in the edit test: the run executes version 3.
  assert.match(await page.textContent('#run-version'), /versão 3 da tarefa/);
  assert.ok(counts.planned >= 1, JSON.stringify(counts));
  assert.equal(counts.pending, 0);
  assert.equal(counts.done + counts.skipped, counts.planned, JSON.stringify(counts));
  // One press, one run.
  const runs = await page.evaluate(async () => {
    const h = { Authorization: `Bearer ${sessionStorage.getItem('tarefas.token')}` };
    const tasks = await (await fetch('/api/v1/tasks', { headers: h })).json();
    const t = tasks.find((x) => x.name === 'Boas-vindas Rotik');
    return (await (await fetch(`/api/v1/runs?task=${t.id}`, { headers: h })).json()).length;
  });
  assert.equal(runs, 1);
});

test('Executar Tarefa: the Suporte run on chats reaches its end', async () => {
  await page.goto(`${BASE}/#/tarefas`);
  await page.waitForSelector('tr:has-text("Pesquisa de satisfação")');
  const { status, counts } = await executeAndFollow('Pesquisa de satisfação');
  assert.match(status, /^Concluída/);
  assert.ok(counts.planned >= 1, JSON.stringify(counts));
  assert.equal(counts.pending, 0);
  // The list shows the last run.
  await page.goto(`${BASE}/#/tarefas`);
  await page.waitForSelector('tr:has-text("Pesquisa de satisfação") .status.done, tr:has-text("Pesquisa de satisfação") .status.done_with_errors');
  await screenshot('lista-com-ultimas-execucoes');
});

test('every form control has an accessible name', async () => {
  await page.getByRole('link', { name: '+ Adicionar' }).click();
  await page.waitForSelector('h1:has-text("Nova tarefa")');
  await page.getByRole('button', { name: /^E\+/ }).click();
  await page.getByRole('button', { name: /^OU\+/ }).click();
  await page.getByLabel('Automática').check();
  const unnamed = await page.$$eval('input, select, textarea, button', (els) => els
    .filter((e) => e.offsetParent !== null)
    .filter((e) => !(e.labels && e.labels.length) && !e.getAttribute('aria-label') && !e.getAttribute('aria-labelledby') && !(e.tagName === 'BUTTON' && e.textContent.trim()))
    .map((e) => e.outerHTML.slice(0, 80)));
  assert.deepEqual(unnamed, []);
  // The count is announced politely.
  assert.equal(await page.getAttribute('#count-region', 'aria-live'), 'polite');
});

// ---------- campaign safety ----------
async function apiInPage(method, path, body) {
  return page.evaluate(async ([m, p, b]) => {
    const h = { Authorization: `Bearer ${sessionStorage.getItem('tarefas.token')}`, 'Content-Type': 'application/json' };
    const r = await fetch(p, { method: m, headers: h, body: b === null ? undefined : JSON.stringify(b) });
    return { status: r.status, data: await r.json().catch(() => null) };
  }, [method, path, body ?? null]);
}

test('Simular: what each record would get, and no run is made', async () => {
  await page.goto(`${BASE}/#/tarefas`);
  const before = (await apiInPage('GET', '/api/v1/runs?limit=500')).data.length;
  await page.getByRole('link', { name: 'Simular Boas-vindas Rotik' }).click();
  await page.waitForSelector('#dry-run');
  const count = Number(await page.textContent('[data-dry="count"]'));
  const wouldCall = Number(await page.textContent('[data-dry="would_call"]'));
  assert.ok(count >= 1 && wouldCall <= count, `${count} ${wouldCall}`);
  assert.match(await page.textContent('main'), /Nenhuma chamada foi feita à Huggy/);
  assert.equal(await page.locator('#dry-run ~ table tbody tr').count(), Math.min(count, 500));
  await screenshot('simular');
  assert.equal((await apiInPage('GET', '/api/v1/runs?limit=500')).data.length, before);
});

test('Descadastros: ids typed and a CSV imported join the opt-out list', async () => {
  await page.getByRole('link', { name: 'Descadastros' }).click();
  await page.waitForSelector('h1:has-text("Descadastros")');
  await page.getByLabel('Ids de contatos (separados por vírgula)').fill('1001, 1002');
  await page.getByRole('button', { name: 'Adicionar', exact: true }).click();
  await page.waitForFunction(() => document.querySelectorAll('#optout-rows tr').length === 2);
  await page.getByLabel('Importar CSV (coluna contact_id)').setInputFiles({
    name: 'descadastros.csv', mimeType: 'text/csv', buffer: Buffer.from('contact_id\n1003\n1004\n'),
  });
  await page.getByRole('button', { name: 'Importar', exact: true }).click();
  await page.waitForFunction(() => document.querySelectorAll('#optout-rows tr').length === 4);
  assert.match(await page.textContent('#optout-rows'), /csv/);
  await screenshot('descadastros');
  // Removing one.
  await page.locator('#optout-rows tr:has-text("1002") button').click();
  await page.waitForFunction(() => document.querySelectorAll('#optout-rows tr').length === 3);
});

test('Aprovar envio: a run over max_records waits, then goes; its records are listed by outcome', async () => {
  const created = await apiInPage('POST', '/api/v1/tasks', {
    name: 'Guarda de audiência', table: 'contacts', max_records: 3,
    filter: { field: 'id', op: 'lte', value: 1010 },
    action: { flow: { project: 1, flow: 42, channel: '5f0c3a52-7d1e-4c8b-9a2f-0b6e4d3c2a11' },
      policy: { when_in_chat: 'run_remove_agent', when_in_queue: 'abort_and_start', when_in_auto: 'run_keep_auto' } },
  });
  assert.equal(created.status, 201, JSON.stringify(created.data));
  await page.goto(`${BASE}/#/tarefas`);
  await page.getByRole('button', { name: 'Executar Tarefa Guarda de audiência' }).click();
  await page.waitForURL(/#\/execucoes\/\d+$/, { timeout: 60000 });
  await waitText('#run-status', /Aguardando aprovação/, 60000);
  assert.equal(await page.isVisible('#approve'), true);
  await screenshot('aguardando-aprovacao');
  await page.getByRole('button', { name: 'Aprovar envio' }).click();
  await waitText('#run-status', /Concluída/, 120000);
  await page.waitForSelector('#records tbody tr');
  // 1001..1004 were opted out above, 1002 removed again: 1001, 1003 and 1004 are skipped.
  await page.getByLabel('Resultado').selectOption('skipped');
  await page.waitForFunction(() => {
    const rows = [...document.querySelectorAll('#records tbody tr')];
    return rows.length === 3 && rows.every((r) => r.dataset.outcome === 'skipped');
  });
  assert.match(await page.textContent('#records'), /opted out/);
  await screenshot('registros-da-execucao');
});
