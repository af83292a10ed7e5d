/*
 * SoulBox playground: a code pane and a terminal over one WebSocket session (/ws, protocol in
 * docs/api.md).  The API key lives in localStorage and goes to REST calls as a Bearer header
 * and to /ws as the `token` query parameter (browsers cannot set headers on a WebSocket).
 *
 * One connection carries one session (one sandbox): executes and the terminal share it, so
 * files the code writes show up in the terminal.  The session id is kept in sessionStorage, so
 * a reload or a dropped connection reattaches to the same sandbox (the server says
 * "resumed").  Everything the server sends is rendered as text (textContent), never as HTML;
 * images come only as data: URLs of png/svg results.
 */
'use strict';
(() => {
  const $ = (id) => document.getElementById(id);
  const KEY_STORE = 'soulbox.apiKey';
  const SESSION_STORE = 'soulbox.sessionId';
  const MAX_OUTPUT_CHARS = 2_000_000; // older output is dropped past this, the page stays fast

  const ui = {
    keyForm: $('key-form'), key: $('api-key'), conn: $('conn'), notice: $('notice'),
    tabCode: $('tab-code'), tabTerm: $('tab-term'), panelCode: $('panel-code'),
    panelTerm: $('panel-term'), runtime: $('runtime'), run: $('run'), stop: $('stop'),
    clear: $('clear'), status: $('exec-status'), code: $('code'), output: $('output'),
    termBox: $('terminal'), termStatus: $('term-status'), termRestart: $('term-restart'),
  };

  const st = {
    key: localStorage.getItem(KEY_STORE) || '',
    sessionId: sessionStorage.getItem(SESSION_STORE) || '',
    attached: false,   // the server told us which session this connection is on
    ws: null,
    open: false,
    pending: [],       // messages waiting for the socket to open
    running: null,     // id of the execute in flight
    nextId: 1,
    retryMs: 500,
    retryTimer: null,
    noRetry: false,
    term: null,
    fit: null,
    pty: 'closed',     // closed | opening | open
    outChars: 0,
  };

  /* ---- small helpers ------------------------------------------------------------------- */

  function notice(text) {
    ui.notice.textContent = text || '';
    ui.notice.hidden = !text;
  }

  function setConn(state, text) {
    ui.conn.dataset.state = state;
    ui.conn.textContent = text;
  }

  const stripAnsi = (s) => String(s).replace(/\x1b\[[0-9;?]*[ -\/]*[@-~]/g, '');

  function nearBottom(el) {
    return el.scrollHeight - el.scrollTop - el.clientHeight < 40;
  }

  function appendNode(node, chars) {
    const stick = nearBottom(ui.output);
    ui.output.appendChild(node);
    st.outChars += chars;
    while (st.outChars > MAX_OUTPUT_CHARS && ui.output.firstChild) {
      st.outChars -= (ui.output.firstChild.textContent || '').length;
      ui.output.removeChild(ui.output.firstChild);
    }
    if (stick) ui.output.scrollTop = ui.output.scrollHeight;
  }

  /* Streamed text: consecutive chunks of one stream grow the same span. */
  function appendText(text, cls) {
    if (!text) return;
    const last = ui.output.lastChild;
    if (last && last.nodeType === 1 && last.dataset.stream === cls) {
      const stick = nearBottom(ui.output);
      last.textContent += text;
      st.outChars += text.length;
      if (stick) ui.output.scrollTop = ui.output.scrollHeight;
      return;
    }
    const span = document.createElement('span');
    span.className = cls;
    span.dataset.stream = cls;
    span.textContent = text;
    appendNode(span, text.length);
  }

  function appendBlock(cls, text) {
    const el = document.createElement('span');
    el.className = cls;
    el.textContent = text;
    appendNode(el, text.length);
    return el;
  }

  /* ---- REST ------------------------------------------------------------------------------ */

  async function loadRuntimes() {
    ui.runtime.disabled = true;
    let r;
    try {
      r = await fetch('/api/v1/runtimes', { headers: { Authorization: 'Bearer ' + st.key } });
    } catch (e) {
      notice('Cannot reach the server: ' + e.message);
      return false;
    }
    if (r.status === 401 || r.status === 403) {
      notice('The server refused this API key (' + r.status + '). Enter a valid key.');
      setConn('err', 'key refused');
      return false;
    }
    if (!r.ok) {
      notice('Listing runtimes failed: HTTP ' + r.status);
      return false;
    }
    const list = (await r.json()).runtimes || [];
    const prev = ui.runtime.value;
    ui.runtime.textContent = '';
    for (const rt of list) {
      const o = document.createElement('option');
      o.value = rt.name;
      o.textContent = rt.name + (rt.version ? ' — ' + rt.version : '');
      ui.runtime.appendChild(o);
    }
    const want = list.some((rt) => rt.name === prev) ? prev
      : list.some((rt) => rt.name === 'python') ? 'python' : (list[0] || {}).name;
    if (want) ui.runtime.value = want;
    ui.runtime.disabled = list.length === 0;
    notice(list.length ? '' : 'This server has no runtimes installed.');
    return true;
  }

  /* ---- the WebSocket session ------------------------------------------------------------ */

  function send(msg) {
    if (st.open) st.ws.send(JSON.stringify(msg));
    else {
      st.pending.push(msg);
      connect();
    }
  }

  function connect() {
    if (!st.key || st.ws) return;
    clearTimeout(st.retryTimer);
    st.noRetry = false;
    const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
    let url = proto + '//' + location.host + '/ws?token=' + encodeURIComponent(st.key);
    if (st.sessionId) url += '&session_id=' + encodeURIComponent(st.sessionId);
    setConn('off', 'connecting…');
    const ws = new WebSocket(url);
    st.ws = ws;
    ws.onopen = () => {
      st.open = true;
      st.retryMs = 500;
      setConn('on', 'connected');
      updateButtons();
      const q = st.pending;
      st.pending = [];
      for (const m of q) ws.send(JSON.stringify(m));
      if (!ui.panelTerm.hidden && st.pty === 'closed') openPty();
    };
    ws.onmessage = (ev) => {
      let m;
      try { m = JSON.parse(ev.data); } catch (e) { return; }
      onMessage(m);
    };
    ws.onclose = (ev) => {
      const wasOpen = st.open;
      st.ws = null;
      st.open = false;
      st.attached = false;
      if (st.running) {
        appendBlock('exit bad', 'connection lost while running');
        endRun();
      }
      if (st.pty !== 'closed') termClosed('connection lost');
      let why = 'disconnected';
      if (ev.code === 4001) {
        why = 'session taken over by another tab';
        st.noRetry = true;
      } else if (ev.code === 4004) {
        why = 'session ended; starting a new one';
        st.sessionId = '';
        sessionStorage.removeItem(SESSION_STORE);
      } else if (!wasOpen) {
        why = 'could not connect';
      }
      setConn('err', why);
      updateButtons();
      if (!st.noRetry && st.key) {
        st.retryTimer = setTimeout(connect, st.retryMs);
        st.retryMs = Math.min(st.retryMs * 2, 10000);
      }
    };
  }

  function disconnect() {
    st.noRetry = true;
    clearTimeout(st.retryTimer);
    if (st.ws) st.ws.close(1000);
  }

  function onMessage(m) {
    switch (m.type) {
      case 'session':
        st.attached = true;
        st.sessionId = m.session_id;
        sessionStorage.setItem(SESSION_STORE, m.session_id);
        setConn('on', 'connected · ' + m.session_id + (m.resumed ? ' (resumed)' : ''));
        break;
      case 'stdout':
      case 'stderr':
        appendText(m.output, m.type);
        break;
      case 'result':
        renderResult(m);
        break;
      case 'error':
        if (m.code) protocolError(m);
        else renderError(m);
        break;
      case 'exit':
        renderExit(m);
        if (m.id === undefined || m.id === st.running) endRun();
        break;
      case 'pty_started':
        st.pty = 'open';
        ui.termStatus.textContent = 'bash in the sandbox (' + m.cols + '×' + m.rows + ')';
        ui.termRestart.hidden = true;
        fitTerm(true);
        break;
      case 'pty_output':
        if (st.term) st.term.write(m.data);
        break;
      case 'pty_exit':
        termClosed('shell exited (' + (m.status || 'exit') + ' ' + m.exit_code + ')');
        break;
      default:
        break;
    }
  }

  function protocolError(m) {
    if (m.code === 'pty_exists') { // the session kept its terminal across a reconnect
      st.pty = 'open';
      ui.termStatus.textContent = 'bash in the sandbox';
      return;
    }
    if (m.code === 'session_ended' || m.code === 'session_forbidden') {
      st.sessionId = '';
      sessionStorage.removeItem(SESSION_STORE);
    }
    if (st.pty === 'opening' && /pty|session|sandbox/.test(m.code)) termClosed(m.message);
    appendBlock('stderr', '[' + m.code + '] ' + (m.message || '') + '\n');
    if (st.running && (m.id === undefined || m.id === st.running) &&
        m.code !== 'no_execution' && m.code !== 'rate_limited') {
      endRun();
    }
  }

  /* ---- the code pane -------------------------------------------------------------------- */

  function renderResult(m) {
    const box = document.createElement('span');
    box.className = 'result';
    let chars = 0;
    if (m.png || m.jpeg || m.svg) {
      const img = document.createElement('img');
      img.src = m.png ? 'data:image/png;base64,' + m.png
        : m.jpeg ? 'data:image/jpeg;base64,' + m.jpeg
          : 'data:image/svg+xml;base64,' + btoa(unescape(encodeURIComponent(m.svg)));
      img.alt = m.text ? 'result image: ' + m.text : 'result image';
      // The image gets its height when decoded: keep following the output if we were.
      const stick = nearBottom(ui.output);
      img.addEventListener('load', () => { if (stick) ui.output.scrollTop = ui.output.scrollHeight; });
      box.appendChild(img);
      chars = 100;
    } else {
      const text = m.text !== undefined ? m.text
        : m.json !== undefined ? JSON.stringify(m.json, null, 2)
          : m.html !== undefined ? m.html : '';
      box.textContent = text + '\n';
      chars = text.length;
    }
    appendNode(box, chars);
  }

  function renderError(m) {
    const box = document.createElement('span');
    box.className = 'error';
    const head = document.createElement('strong');
    head.textContent = (m.name || 'Error') + (m.value ? ': ' + m.value : '');
    box.appendChild(head);
    const tb = Array.isArray(m.traceback) ? m.traceback.join('\n') : m.traceback;
    if (tb) {
      const pre = document.createElement('pre');
      pre.textContent = stripAnsi(tb);
      box.appendChild(pre);
    }
    appendNode(box, (box.textContent || '').length);
  }

  function renderExit(m) {
    const ok = m.exit_code === 0;
    const parts = ['exit ' + m.exit_code, m.status];
    if (m.execution_time !== undefined) parts.push(m.execution_time + ' ms');
    appendBlock('exit' + (ok ? '' : ' bad'), '— ' + parts.join(' · ') + '\n');
    ui.status.textContent = m.status + (m.execution_time !== undefined ? ' in ' + m.execution_time + ' ms' : '');
    ui.status.classList.toggle('bad', !ok);
  }

  function run() {
    if (st.running || !st.key) return;
    const id = 'r' + st.nextId++;
    st.running = id;
    ui.status.textContent = 'running…';
    ui.status.classList.remove('bad');
    const msg = { type: 'execute', runtime: ui.runtime.value || 'python', code: ui.code.value, id };
    if (st.sessionId) msg.session_id = st.sessionId;
    send(msg);
    updateButtons();
  }

  function endRun() {
    st.running = null;
    updateButtons();
  }

  function updateButtons() {
    ui.run.disabled = !st.key || !!st.running || ui.runtime.disabled;
    ui.stop.disabled = !st.running || !st.open;
  }

  /* ---- the terminal ---------------------------------------------------------------------- */

  function ensureTerm() {
    if (st.term) return true;
    if (!window.Terminal || !window.FitAddon) {
      ui.termStatus.textContent = 'xterm.js is not installed on this server (run scripts/setup-deps.sh)';
      return false;
    }
    st.term = new window.Terminal({
      cursorBlink: true, fontFamily: '"DejaVu Sans Mono", monospace', fontSize: 14,
      scrollback: 5000, screenReaderMode: false,
    });
    st.fit = new window.FitAddon.FitAddon();
    st.term.loadAddon(st.fit);
    st.term.open(ui.termBox);
    st.term.onData((data) => { if (st.pty === 'open') send({ type: 'input', data }); });
    st.term.onResize(({ cols, rows }) => {
      if (st.pty === 'open') {
        send({ type: 'resize', cols, rows });
        ui.termStatus.textContent = 'bash in the sandbox (' + cols + '×' + rows + ')';
      }
    });
    return true;
  }

  function fitTerm(force) {
    if (!st.term || ui.panelTerm.hidden) return;
    try { st.fit.fit(); } catch (e) { /* not laid out yet */ }
    if (force && st.pty === 'open') send({ type: 'resize', cols: st.term.cols, rows: st.term.rows });
  }

  function openPty() {
    if (!ensureTerm() || st.pty !== 'closed' || !st.key) return;
    fitTerm(false);
    st.pty = 'opening';
    ui.termStatus.textContent = 'opening terminal…';
    const msg = { type: 'pty', cols: st.term.cols, rows: st.term.rows };
    if (st.sessionId) msg.session_id = st.sessionId;
    send(msg);
    st.term.focus();
  }

  function termClosed(why) {
    st.pty = 'closed';
    ui.termStatus.textContent = why;
    ui.termRestart.hidden = false;
    if (st.term) st.term.write('\r\n\x1b[2m[' + why + ']\x1b[0m\r\n');
  }

  /* ---- tabs ------------------------------------------------------------------------------ */

  function selectTab(which) {
    const term = which === 'term';
    ui.tabCode.setAttribute('aria-selected', String(!term));
    ui.tabTerm.setAttribute('aria-selected', String(term));
    ui.tabCode.tabIndex = term ? -1 : 0;
    ui.tabTerm.tabIndex = term ? 0 : -1;
    ui.panelCode.hidden = term;
    ui.panelTerm.hidden = !term;
    if (term) {
      if (ensureTerm()) {
        fitTerm(true);
        if (st.pty === 'closed') openPty();
        st.term.focus();
      }
    } else {
      ui.code.focus();
    }
  }

  /* ---- wiring ---------------------------------------------------------------------------- */

  let escaped = false;
  ui.code.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) {
      e.preventDefault();
      run();
      return;
    }
    if (e.key === 'Escape') { escaped = true; return; }
    if (e.key === 'Tab' && !escaped && !e.ctrlKey && !e.altKey && !e.metaKey) {
      e.preventDefault();
      const { selectionStart: a, selectionEnd: b, value } = ui.code;
      if (e.shiftKey) { // outdent the current line
        const ls = value.lastIndexOf('\n', a - 1) + 1;
        const n = value.slice(ls, ls + 4).match(/^ {0,4}/)[0].length;
        if (n) {
          ui.code.setRangeText('', ls, ls + n, 'preserve');
          ui.code.setSelectionRange(Math.max(ls, a - n), Math.max(ls, b - n));
        }
      } else {
        ui.code.setRangeText('    ', a, b, 'end');
      }
      return;
    }
    escaped = false;
  });

  ui.keyForm.addEventListener('submit', async (e) => {
    e.preventDefault();
    const key = ui.key.value.trim();
    disconnect();
    st.key = key;
    if (key) localStorage.setItem(KEY_STORE, key);
    else localStorage.removeItem(KEY_STORE);
    updateButtons();
    if (!key) { setConn('off', 'not connected'); return; }
    if (await loadRuntimes()) connect();
    updateButtons();
  });

  ui.run.addEventListener('click', run);
  ui.stop.addEventListener('click', () => {
    if (st.running) send({ type: 'interrupt' });
  });
  ui.clear.addEventListener('click', () => {
    ui.output.textContent = '';
    st.outChars = 0;
  });
  ui.tabCode.addEventListener('click', () => selectTab('code'));
  ui.tabTerm.addEventListener('click', () => selectTab('term'));
  for (const t of [ui.tabCode, ui.tabTerm]) {
    t.addEventListener('keydown', (e) => {
      if (e.key === 'ArrowLeft' || e.key === 'ArrowRight') {
        const other = t === ui.tabCode ? ui.tabTerm : ui.tabCode;
        other.focus();
        selectTab(other === ui.tabTerm ? 'term' : 'code');
      }
    });
  }
  ui.termRestart.addEventListener('click', () => { openPty(); });
  let resizeTimer = null;
  window.addEventListener('resize', () => {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(() => fitTerm(false), 100); // onResize sends the new size
  });

  ui.key.value = st.key;
  updateButtons();
  if (st.key) {
    loadRuntimes().then((ok) => { if (ok) connect(); updateButtons(); });
  } else {
    setConn('off', 'enter an API key');
  }
})();
