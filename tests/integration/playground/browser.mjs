// The playground in a real browser: Debian's chromium driven by playwright-core (from npm, no
// browser download) against a running `soulbox serve` (started by test_playground.py).
//
// env: SB_URL (http://127.0.0.1:PORT), SB_KEY (a user API key), SB_ARTIFACTS (directory for
// screenshots), SB_PLAYWRIGHT (node_modules holding playwright-core), SB_CHROMIUM (the binary).
// Prints "ok NAME" / "FAIL NAME" per step and exits non-zero on the first failure (later
// steps build on earlier ones); screenshots are saved even on failure.
import { createRequire } from 'node:module';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const env = (k) => {
  if (!process.env[k]) throw new Error(`${k} is not set`);
  return process.env[k];
};
const URL_ = env('SB_URL');
const KEY = env('SB_KEY');
const ART = env('SB_ARTIFACTS');
const require = createRequire(path.join(env('SB_PLAYWRIGHT'), 'noop.js'));
const { chromium } = require('playwright-core');

const T = 60_000; // per wait: a sandbox start plus an execute, on a loaded 2-core CI box
const problems = []; // console errors, page errors, CSP violations: none allowed

function assert(c, msg) {
  if (!c) throw new Error(msg);
}

const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'sb-chromium-'));
fs.mkdirSync(ART, { recursive: true });
const ctx = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.SB_CHROMIUM || '/usr/bin/chromium',
  headless: true,
  viewport: { width: 1280, height: 800 },
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  timeout: T,
});
const page = ctx.pages()[0] || await ctx.newPage();
page.setDefaultTimeout(T);
page.on('console', (m) => { if (m.type() === 'error') problems.push('console: ' + m.text()); });
page.on('pageerror', (e) => problems.push('pageerror: ' + e.message));
// What the page sent over /ws, to check the resize message reached the wire.
const sent = [];
page.on('websocket', (ws) => ws.on('framesent', (f) => sent.push(String(f.payload))));

const output = page.locator('#output');
let failed = 0;
let passed = 0;

async function step(name, fn) {
  if (failed) return;
  try {
    await fn();
    passed++;
    console.log('ok', name);
  } catch (e) {
    failed++;
    console.log('FAIL', name);
    console.log(String(e && e.stack || e));
    try {
      console.log('--- #output:\n' + (await output.innerText({ timeout: 2000 })));
      console.log('--- status: ' + (await page.locator('#conn').innerText({ timeout: 2000 })));
      await page.screenshot({ path: path.join(ART, 'playground-failure.png') });
      console.log('screenshot: ' + path.join(ART, 'playground-failure.png'));
    } catch (e2) { /* the page is gone */ }
  }
}

// Types into the editor the way a person does (select all, type), newlines as Enter.
async function typeCode(code) {
  await page.locator('#code').click();
  await page.keyboard.press('Control+A');
  await page.keyboard.press('Delete');
  await page.keyboard.type(code);
}

async function runAndWait(expectStatus) {
  const before = await output.locator('.exit').count();
  await page.locator('#run').click();
  await output.locator('.exit').nth(before).waitFor();
  const exit = await output.locator('.exit').nth(before).innerText();
  if (expectStatus) assert(exit.includes(expectStatus), `exit line '${exit}' lacks '${expectStatus}'`);
  await page.locator('#run:not([disabled])').waitFor();
  return exit;
}

await step('page loads with its assets', async () => {
  const r = await page.goto(URL_ + '/playground');
  assert(r.status() === 200, 'GET /playground: ' + r.status());
  assert((await page.title()) === 'SoulBox Playground', 'title');
  await page.waitForFunction(() => window.Terminal && window.FitAddon);
  assert(await page.locator('#run').isDisabled(), 'Run is enabled without a key');
});

await step('a bad key is refused', async () => {
  await page.locator('#api-key').fill('sbk_not_a_real_key_000000000000000000');
  await page.locator('#key-save').click();
  await page.locator('#notice').filter({ hasText: 'refused' }).waitFor();
  problems.length = 0; // the 401 of that fetch is logged by chromium as a console error
});

await step('key entered, runtimes listed, connected', async () => {
  await page.locator('#api-key').fill(KEY);
  await page.locator('#key-save').click();
  await page.locator('#runtime:not([disabled])').waitFor();
  const names = await page.locator('#runtime option').evaluateAll((os) => os.map((o) => o.value));
  assert(names.includes('python') && names.includes('bash'), 'runtimes: ' + names);
  assert((await page.locator('#runtime').inputValue()) === 'python', 'python is not the default');
  await page.locator('#conn[data-state="on"]').waitFor();
  assert(await page.evaluate(() => localStorage.getItem('soulbox.apiKey')) !== null, 'key not kept');
  await page.locator('#notice').waitFor({ state: 'hidden' });
});

await step('python code typed and run: stdout and stderr stream in', async () => {
  await page.locator('#runtime').selectOption('python');
  await typeCode('x = 6 * 7\nprint("hello from the playground", x)\n' +
    'import sys\nprint("to stderr", file=sys.stderr)\n');
  await runAndWait('exit 0');
  await output.locator('.stdout', { hasText: 'hello from the playground 42' }).waitFor();
  await output.locator('.stderr', { hasText: 'to stderr' }).waitFor();
  await page.locator('#conn', { hasText: 'pg-' }).or(page.locator('#conn', { hasText: 'ses-' }))
    .waitFor();
});

await step('the editor indents with Tab', async () => {
  await typeCode('for i in range(3):\n');
  await page.keyboard.press('Tab');
  await page.keyboard.type('print("line", i * x)');
  const code = await page.locator('#code').inputValue();
  assert(code.includes('\n    print("line"'), 'Tab did not indent: ' + JSON.stringify(code));
  await runAndWait('exit 0');
  await output.locator('.stdout', { hasText: 'line 84' }).waitFor(); // x survived: one session
});

await step('an exception shows its name, value and traceback', async () => {
  await typeCode('def f():\n    return 1 / 0\nf()\n');
  await runAndWait();
  const err = output.locator('.error').last();
  await err.waitFor();
  const text = await err.innerText();
  assert(text.includes('ZeroDivisionError'), 'no error name: ' + text);
  assert(/division by zero/.test(text), 'no error value: ' + text);
  assert(await err.locator('pre').count() === 1 && /f\(\)|line \d/.test(text), 'no traceback: ' + text);
});

await step('a matplotlib plot is rendered as an image', async () => {
  await typeCode('import matplotlib.pyplot as plt\nplt.figure(figsize=(4, 3))\n' +
    'plt.plot([1, 2, 3, 4], [1, 4, 9, 16], marker="o")\nplt.title("squares")\nplt.show()\n');
  await runAndWait('exit 0');
  const img = output.locator('.result img').last();
  await img.waitFor();
  const src = await img.getAttribute('src');
  assert(src.startsWith('data:image/png;base64,'), 'img src: ' + src.slice(0, 40));
  const w = await img.evaluate((el) => el.complete && el.naturalWidth);
  assert(w > 100, 'the PNG did not decode (naturalWidth ' + w + ')');
});

await step('screenshot of the code pane', async () => {
  await page.screenshot({ path: path.join(ART, 'playground.png') });
  console.log('screenshot: ' + path.join(ART, 'playground.png'));
});

await step('Stop interrupts running code and the session keeps its state', async () => {
  await typeCode('import time\nfor i in range(600):\n');
  await page.keyboard.press('Tab');
  await page.keyboard.type('print("tick", i, flush=True); time.sleep(0.05)');
  const before = await output.locator('.exit').count();
  await page.locator('#run').click();
  await output.locator('.stdout', { hasText: 'tick 3' }).waitFor();
  assert(await page.locator('#stop').isEnabled(), 'Stop is disabled while running');
  await page.locator('#stop').click();
  await output.locator('.exit').nth(before).waitFor();
  const exit = await output.locator('.exit').nth(before).innerText();
  assert(/interrupted|130/.test(exit), 'not interrupted: ' + exit);
  await typeCode('print("x is still", x)\n');
  await runAndWait('exit 0');
  await output.locator('.stdout', { hasText: 'x is still 42' }).waitFor();
});

await step('terminal tab: ls lists what the code wrote', async () => {
  await typeCode('open("made_by_playground.txt", "w").write("hi")\n');
  await runAndWait('exit 0');
  await page.locator('#tab-term').click();
  await page.locator('#term-status', { hasText: 'bash in the sandbox' }).waitFor();
  const rows = page.locator('#terminal .xterm-rows');
  await rows.filter({ hasText: '$' }).waitFor(); // the prompt
  await page.locator('#terminal .xterm-helper-textarea').focus();
  await page.keyboard.type('ls\n');
  await rows.filter({ hasText: 'made_by_playground.txt' }).waitFor();
});

await step('terminal resize reaches the shell', async () => {
  const resizes = () => sent.map((s) => { try { return JSON.parse(s); } catch { return {}; } })
    .filter((m) => m.type === 'resize');
  const before = resizes().length;
  await page.setViewportSize({ width: 900, height: 600 });
  // The page debounces window resizes (100 ms), fits, and sends {"type":"resize"}.
  const deadline = Date.now() + 10_000;
  while (resizes().length === before) {
    assert(Date.now() < deadline, 'no resize message after the viewport shrank');
    await page.waitForTimeout(100); // polling the page's own outgoing frames
  }
  const resize = resizes().pop();
  const opened = sent.map((s) => { try { return JSON.parse(s); } catch { return {}; } })
    .filter((m) => m.type === 'pty')[0];
  assert(opened && resize.cols < opened.cols && resize.rows < opened.rows,
    `the terminal did not shrink: ${JSON.stringify(opened)} -> ${JSON.stringify(resize)}`);
  await page.locator('#terminal .xterm-helper-textarea').focus();
  await page.keyboard.type('stty size\n');
  await page.locator('#terminal .xterm-rows')
    .filter({ hasText: `${resize.rows} ${resize.cols}` }).waitFor();
  await page.screenshot({ path: path.join(ART, 'playground-terminal.png') });
  console.log('screenshot: ' + path.join(ART, 'playground-terminal.png'));
});

await step('no console errors, page errors or CSP violations', async () => {
  assert(problems.length === 0, problems.join('\n'));
});

await ctx.close();
fs.rmSync(profile, { recursive: true, force: true });
console.log(`browser: ${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
