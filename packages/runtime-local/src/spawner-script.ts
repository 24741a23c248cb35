/**
 * The program of the spawner process (see spawner.ts), run with `node -e`.
 * Plain CommonJS in a string: it needs no file on disk, so it runs the same
 * from the sources, from a bundle and from a package install.
 *
 * Messages in (from the agent):
 *   {t:'env', ref, env}          remember an environment, referred to by `ref`
 *   {t:'spawn', id, file, args, cwd, env | envRef, uid?, gid?, stdin}
 *   {t:'+', ids} / {t:'-', ids}  watch / stop watching session ids (pty tasks;
 *                                spawned tasks are watched from their start)
 * Messages out:
 *   {t:'stdout', id, pid} + handle, {t:'stderr', id} + handle, {t:'stdin', id} + handle
 *   {t:'failed', id, code, message}
 *   {t:'exit', id, code, signal}
 *
 * When the channel closes (the agent disposed the runtime, or died — even by
 * SIGKILL, as the kernel closes the socket), it SIGKILLs every watched process
 * group (those of the messages, and those set in the shared table named by
 * OVERTHERE_WATCH_TABLE=fd:bytes, native spawn's) and every process still in
 * one of those sessions, then exits.
 */
export const SPAWNER_SCRIPT = String.raw`'use strict';
const { spawn } = require('node:child_process');
const { readdirSync, readFileSync, readSync } = require('node:fs');
process.title = 'overthere-spawner';
// A terminal's ^C or a hang-up that kills the agent must not take it down first.
for (const name of ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGPIPE']) process.on(name, () => {});

const watched = new Set();
const envs = new Map();

process.on('message', (message) => {
  switch (message.t) {
    case 'env': envs.set(message.ref, message.env); break;
    case '+': for (const id of message.ids) if (id > 1) watched.add(id); break;
    case '-': for (const id of message.ids) watched.delete(id); break;
    case 'spawn': start(message); break;
  }
});

// With a callback, a send on a closed channel (the agent just died) reports to
// it instead of throwing: the spawner must live on to do its last job.
function send(message, handle) {
  if (process.connected) process.send(message, handle, undefined, () => {});
}

function failed(id, error) {
  send({ t: 'failed', id, code: typeof error.code === 'string' ? error.code : undefined, message: String(error.message) });
}

function start(request) {
  const { id } = request;
  let child;
  try {
    child = spawn(request.file, request.args, {
      cwd: request.cwd,
      env: request.env !== undefined ? request.env : envs.get(request.envRef),
      // Its own session, so its own process group: pgid = pid.
      detached: true,
      stdio: [request.stdin ? 'pipe' : 'ignore', 'pipe', 'pipe'],
      uid: request.uid,
      gid: request.gid,
    });
  } catch (error) {
    failed(id, error);
    return;
  }
  if (child.pid === undefined) {
    child.once('error', (error) => failed(id, error));
    return;
  }
  child.on('error', () => {});
  watched.add(child.pid);
  // Not one byte is read here: the agent reads these descriptors itself.
  for (const stream of [child.stdout, child.stderr]) {
    stream.pause();
    stream._handle.readStop();
  }
  // Handles go out one at a time (each waits for the agent's ack), and Node
  // destroys a child's stdin when the child exits: a task that ends at once
  // would lose a stdin still queued. Detached from the ChildProcess, it stays.
  const stdin = child.stdin;
  child.stdin = null;
  send({ t: 'stdout', id, pid: child.pid }, child.stdout);
  send({ t: 'stderr', id }, child.stderr);
  if (stdin) send({ t: 'stdin', id }, stdin);
  child.once('exit', (code, signal) => send({ t: 'exit', id, code, signal }));
}

function killGroup(id) {
  try { process.kill(-id, 'SIGKILL'); } catch {}
}

// Native spawn's shared table: one bit per process group to watch.
function readWatchTable() {
  const setting = process.env.OVERTHERE_WATCH_TABLE;
  if (!setting) return;
  const [fd, bytes] = setting.split(':').map(Number);
  const table = Buffer.alloc(bytes);
  try { readSync(fd, table, 0, bytes, 0); } catch { return; }
  for (let index = 0; index < bytes; index += 1) {
    const byte = table[index];
    if (byte === 0) continue;
    for (let bit = 0; bit < 8; bit += 1) if (byte & (1 << bit)) watched.add(index * 8 + bit);
  }
}

function killWatched() {
  readWatchTable();
  for (const id of watched) killGroup(id);
  // Processes that moved to another group of the session (job control).
  if (watched.size > 0) {
    for (let pass = 0; pass < 2; pass += 1) {
      let entries = [];
      try { entries = readdirSync('/proc'); } catch {}
      for (const entry of entries) {
        if (!/^[0-9]+$/.test(entry)) continue;
        let stat;
        try { stat = readFileSync('/proc/' + entry + '/stat', 'latin1'); } catch { continue; }
        const session = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[3]);
        if (watched.has(session)) {
          try { process.kill(Number(entry), 'SIGKILL'); } catch {}
        }
      }
    }
  }
}

process.on('disconnect', () => {
  killWatched();
  process.exit(0);
});
// Whatever went wrong, nobody could watch these processes any more.
process.on('uncaughtException', () => {
  killWatched();
  process.exit(1);
});
`;
