#!/usr/bin/env node
// SoulBox warm kernel for JavaScript (protocol: docs/plugins.md, "Warm kernels").
//
// One JSON object per line on stdin (requests), one per line on stdout (events).  Each context
// is a node `vm` context with its own globals; `var`, function and top-level `let`/`const`
// declarations persist between executes, the completion value of a cell is its main result
// (util.inspect as text/plain), console output is streamed as it happens, a Promise result is
// awaited, and a cell using top-level `await` runs as an async function (its declarations are
// then local to that cell; assign to globalThis to keep them).  SIGINT interrupts synchronous
// code (vm breakOnSigint) and keeps the context.
//
// The protocol channel is fd 1, written synchronously; user code sees a `process` whose
// stdout/stderr are event streams, and an empty stdin.
'use strict';
const vm = require('vm');
const util = require('util');
const fs = require('fs');
const path = require('path');
const readline = require('readline');
const { Module } = require('module');

const PROTOCOL = 1;

function emit(obj) {
  let data = Buffer.from(JSON.stringify(obj) + '\n', 'utf8');
  let off = 0;
  while (off < data.length) {
    try {
      off += fs.writeSync(1, data, off);
    } catch (e) {
      if (e.code !== 'EAGAIN') throw e;
    }
  }
}

let currentId = null;

function fmt(args) {
  return util.formatWithOptions({ colors: false }, ...args) + '\n';
}

function makeConsole(idRef) {
  const out = (...a) => emit({ type: 'stdout', id: currentId, text: fmt(a) });
  const err = (...a) => emit({ type: 'stderr', id: currentId, text: fmt(a) });
  const c = {
    log: out, info: out, debug: out, dir: (o) => out(util.inspect(o)),
    error: err, warn: err, trace: (...a) => err(...a, '\n' + new Error().stack),
    table: out, group: out, groupEnd: () => {}, time: () => {}, timeEnd: () => {}, assert: (v, ...a) => { if (!v) err('Assertion failed:', ...a); },
  };
  void idRef;
  return c;
}

function makeStream(name) {
  return {
    write(chunk, enc, cb) {
      const text = typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString('utf8');
      emit({ type: name, id: currentId, text });
      if (typeof enc === 'function') enc();
      else if (typeof cb === 'function') cb();
      return true;
    },
    isTTY: false,
    fd: name === 'stdout' ? 1 : 2,
    on() { return this; }, once() { return this; }, end() {},
  };
}

const userStdout = makeStream('stdout');
const userStderr = makeStream('stderr');
const userProcess = new Proxy(process, {
  get(target, prop) {
    if (prop === 'stdout') return userStdout;
    if (prop === 'stderr') return userStderr;
    if (prop === 'stdin') return require('stream').Readable.from([]);
    const v = Reflect.get(target, prop);
    return typeof v === 'function' ? v.bind(target) : v;
  },
});

class Context {
  constructor(id) {
    this.id = id;
    this.reset();
  }
  reset() {
    this.count = 0;
    const req = Module.createRequire(path.join(process.cwd(), '__soulbox_cell__.js'));
    const sandbox = {
      console: makeConsole(), process: userProcess, require: req, module: { exports: {} },
      Buffer, setTimeout, clearTimeout, setInterval, clearInterval, setImmediate, clearImmediate,
      queueMicrotask, URL, URLSearchParams, TextEncoder, TextDecoder, structuredClone,
      fetch: globalThis.fetch, AbortController, performance: globalThis.performance,
    };
    sandbox.exports = sandbox.module.exports;
    this.ctx = vm.createContext(sandbox, { name: 'context ' + this.id });
  }
}

const contexts = new Map([['default', new Context('default')]]);

function errorEvent(id, e) {
  if (e && typeof e === 'object' && 'stack' in e) {
    const name = e.name || (e.constructor && e.constructor.name) || 'Error';
    let value = e.message !== undefined ? String(e.message) : String(e);
    if (e.code === 'ERR_SCRIPT_EXECUTION_INTERRUPTED') return { type: 'error', id, name: 'Interrupted', value, traceback: [] };
    return { type: 'error', id, name, value, traceback: String(e.stack || '').split('\n') };
  }
  return { type: 'error', id, name: 'Thrown', value: util.inspect(e), traceback: [] };
}

function bundle(v) {
  const data = { 'text/plain': typeof v === 'string' ? util.inspect(v) : util.inspect(v, { depth: 4 }) };
  if (v && typeof v === 'object') {
    for (const [m, mime] of [['_repr_html_', 'text/html'], ['_repr_svg_', 'image/svg+xml'], ['_repr_png_', 'image/png']]) {
      if (typeof v[m] === 'function') {
        try { data[mime] = String(v[m]()); } catch (_) { /* ignore */ }
      }
    }
  }
  return data;
}

async function execute(req) {
  const id = req.id;
  const cid = req.context_id || 'default';
  const c = contexts.get(cid);
  if (!c) {
    emit({ type: 'error', id, name: 'ContextNotFound', value: `no context ${cid}`, traceback: [] });
    emit({ type: 'done', id, execution_count: null });
    return;
  }
  const code = String(req.code || '');
  c.count += 1;
  currentId = id;
  const filename = `cell-${cid}-${c.count}.js`;
  try {
    let script;
    let asyncCell = false;
    try {
      script = new vm.Script(code, { filename });
    } catch (e) {
      if (e instanceof SyntaxError && /await is only valid|await/.test(e.message) && /\bawait\b/.test(code)) {
        // Top-level await: run the cell as an async function returning its last expression
        // when that is simple to find (a last line that is an expression statement).
        const lines = code.replace(/\s+$/, '').split('\n');
        const last = lines.pop();
        let body = code;
        if (last && !/^\s*(const|let|var|function|class|if|for|while|return|}|\/\/)/.test(last)) {
          body = lines.join('\n') + '\nreturn (' + last.replace(/;\s*$/, '') + ');';
        }
        try {
          script = new vm.Script(`(async () => {\n${body}\n})()`, { filename, lineOffset: -1 });
        } catch (_) {
          script = new vm.Script(`(async () => {\n${code}\n})()`, { filename, lineOffset: -1 });
        }
        asyncCell = true;
      } else {
        throw e;
      }
    }
    let value = script.runInContext(c.ctx, { breakOnSigint: true, displayErrors: false });
    if (value && typeof value.then === 'function' && (asyncCell || util.types.isPromise(value))) {
      value = await value;
    }
    if (value !== undefined) {
      emit({ type: 'result', id, is_main_result: true, data: bundle(value) });
    }
  } catch (e) {
    emit(errorEvent(id, e));
  }
  emit({ type: 'done', id, execution_count: c.count });
}

async function handle(req) {
  const id = req.id;
  switch (req.type) {
    case 'execute':
      return execute(req);
    case 'create_context': {
      const cid = req.context_id || require('crypto').randomUUID().replace(/-/g, '');
      if (contexts.has(cid)) return emit({ type: 'error', id, name: 'ContextExists', value: cid, traceback: [] });
      contexts.set(cid, new Context(cid));
      return emit({ type: 'context', id, context_id: cid });
    }
    case 'reset_context':
    case 'restart': {
      const cid = req.context_id || 'default';
      const c = contexts.get(cid);
      if (!c) return emit({ type: 'error', id, name: 'ContextNotFound', value: cid, traceback: [] });
      c.reset();
      return emit({ type: 'context', id, context_id: cid });
    }
    case 'delete_context': {
      const cid = req.context_id;
      if (!contexts.has(cid)) return emit({ type: 'error', id, name: 'ContextNotFound', value: String(cid), traceback: [] });
      contexts.delete(cid);
      if (cid === 'default') contexts.set('default', new Context('default'));
      return emit({ type: 'ok', id });
    }
    case 'list_contexts':
      return emit({ type: 'contexts', id, contexts: [...contexts.keys()].sort() });
    case 'ping':
      return emit({ type: 'pong', id });
    case 'shutdown':
      emit({ type: 'ok', id });
      return process.exit(0);
    default:
      return emit({ type: 'error', id, name: 'BadRequest', value: `unknown type ${req.type}`, traceback: [] });
  }
}

// Idle SIGINT does nothing; a running cell is interrupted by breakOnSigint.
process.on('SIGINT', () => {});
process.on('uncaughtException', (e) => emit({ ...errorEvent(currentId, e), type: 'error' }));
process.on('unhandledRejection', (e) => emit({ ...errorEvent(currentId, e), type: 'error' }));

// Requests are handled one at a time, in order.
const queue = [];
let busy = false;
async function pump() {
  if (busy) return;
  busy = true;
  while (queue.length) {
    const line = queue.shift();
    let req;
    try {
      req = JSON.parse(line);
      if (!req || typeof req !== 'object' || Array.isArray(req)) throw new Error('a request is a JSON object');
    } catch (e) {
      emit({ type: 'error', id: null, name: 'BadRequest', value: String(e.message), traceback: [] });
      continue;
    }
    try {
      await handle(req);
    } catch (e) {
      emit(errorEvent(req.id, e));
    }
  }
  busy = false;
}

const rl = readline.createInterface({ input: process.stdin, crlfDelay: Infinity, terminal: false });
rl.on('line', (line) => {
  if (line.trim()) {
    queue.push(line);
    pump();
  }
});
rl.on('close', () => {
  const wait = () => (busy || queue.length ? setTimeout(wait, 5) : process.exit(0));
  wait();
});
emit({ type: 'ready', language: 'javascript', protocol: PROTOCOL, version: process.version, pid: process.pid });
