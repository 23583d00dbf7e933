'use strict';
// Pre-started runtimes (leverd --prestart, docs/operations.md): once a JS
// service has started, leverd keeps a lever-serve started ahead, past Node's
// start-up and the addon's load; the next cold start of a JS service is
// handed to it, the pool refills, and one that dies is replaced.
const { test } = require('node:test');
const assert = require('node:assert/strict');
const { spawn, spawnSync } = require('child_process');
const fs = require('fs');
const os = require('os');
const path = require('path');
const { Client } = require('..');
const { startLeverd, within, leverServe } = require('./helpers/leverd');

// Polls `probe` until it returns a truthy value (bounded).
async function waitFor(probe, what, ms = 20000) {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await probe();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms: ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

function readProc(pid, file) {
  try {
    return fs.readFileSync(`/proc/${pid}/${file}`, 'utf8');
  } catch {
    return '';
  }
}

// leverd's lever-serve processes started ahead (their command line says
// --pool-fd=3, also once handed a service): [{pid, ready}]. Ready: blocked
// receiving its hand-off on fd 3 (read or recvmsg of fd 3 in /proc/<pid>/syscall).
const runner = fs.realpathSync(leverServe);  // as leverd resolves it
const receiving = process.arch === 'arm64' ? ['63', '212'] : ['0', '47'];  // read, recvmsg
function pooled(leverdPid) {
  const out = [];
  for (const name of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const stat = readProc(name, 'stat');
    const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
    if (ppid !== leverdPid) continue;
    const argv = readProc(name, 'cmdline').split('\0');
    if (!argv.includes(runner) || !argv.includes('--pool-fd=3')) continue;
    const [nr, fd] = readProc(name, 'syscall').split(' ');
    out.push({ pid: Number(name), ready: receiving.includes(nr) && fd === '0x3' });
  }
  return out;
}

async function instances(leverd, service) {
  const ps = JSON.parse(await leverd.lever('ps', '--json'));
  return ps.instances.filter((i) => i.service === service);
}

test('a cold JS call is served by the pre-started lever-serve; the pool refills and replaces one killed', async () => {
  const leverd = await startLeverd(['--idle-timeout', '300ms']);
  try {
    const svc = 'pooltestservice';
    // A service that says what it runs with, "ram" 100 MB.
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lvn-pool-'));
    fs.chmodSync(dir, 0o755);
    fs.writeFileSync(path.join(dir, 'lever.json'), JSON.stringify({ name: svc, jsEntry: 'server.js', ram: 100 }));
    fs.writeFileSync(path.join(dir, 'server.js'), `
      module.exports = {
        Where(cb) {
          cb(null, { heap: require('v8').getHeapStatistics().heap_size_limit, cwd: process.cwd(),
                     nodeOptions: process.env.NODE_OPTIONS, instance: process.env.LEVEROS_INSTANCE_ID,
                     gateway: global.leverInternalRPCGateway, leveros: typeof require('leveros').Client,
                     uid: process.getuid() });
        },
      };`);
    await leverd.deploy(dir);  // its first instance: JS is in use here
    const c = new Client({ forceHost: leverd.address, waitForReady: true, timeout: 20000 });
    const ep = c.service('dev.lever', svc);
    // What `lever-serve` started for it would have had.
    const fresh = spawnSync(process.execPath, ['--max-old-space-size=90', '-p',
      "require('v8').getHeapStatistics().heap_size_limit"], { encoding: 'utf8' });
    const freshHeap = Number(fresh.stdout.trim());
    assert.ok(freshHeap > 0, fresh.stderr);

    // A cold call (no instance) takes the ready one, whose pid it keeps, and
    // it serves with its service's code dir, environment and heap limit.
    async function coldCallTakes(pid) {
      await waitFor(async () => (await instances(leverd, svc)).length === 0, 'the service to scale to zero');
      const where = await within(ep.invoke('Where'), 20000, 'a cold call');
      const [inst] = await instances(leverd, svc);
      assert.equal(inst.pid, pid, 'the instance is the pre-started process');
      assert.equal(inst.socket, 'inherited', 'it serves on the socket leverd made (socket activation)');
      assert.equal(where.instance, inst.id);
      assert.equal(where.nodeOptions, '--max-old-space-size=90');
      assert.equal(where.heap, freshHeap);
      assert.match(where.gateway, /^unix:\//);
      assert.equal(where.leveros, 'function');
      assert.match(where.cwd, /\/code\//);
      if (process.getuid() === 0) {
        // Under a root leverd it ran as root until its hand-off and is now
        // its service's own user, every id of it (docs/security.md).
        const ids = (name) => readProc(pid, 'status').split('\n').find((l) => l.startsWith(name)).split(/\s+/).slice(1, 5);
        const [uid] = ids('Uid:');
        assert.ok(Number(uid) >= 61184 && Number(uid) <= 65519, `uid ${uid}`);
        assert.deepEqual(ids('Uid:'), [uid, uid, uid, uid]);
        assert.deepEqual(ids('Gid:'), [uid, uid, uid, uid]);
        assert.equal(where.uid, Number(uid));
      }
    }

    const first = await waitFor(() => pooled(leverd.proc.pid).find((p) => p.ready), 'a ready lever-serve');
    // Before its hand-off it knows no service (its environment is the
    // runner's), and it holds none of leverd's files or sockets: the only
    // ones it shares are its stdout and stderr pipes.
    assert.equal(readProc(first.pid, 'environ'), `PATH=/usr/local/bin:/usr/bin:/bin\0`);
    const targets = (pid) =>
      fs.readdirSync(`/proc/${pid}/fd`).map((fd) => {
        try {
          return [fd, fs.readlinkSync(`/proc/${pid}/fd/${fd}`)];
        } catch {
          return [fd, ''];
        }
      });
    const leverdFiles = new Set(targets(leverd.proc.pid).map(([, t]) => t));
    const shared = targets(first.pid).filter(([, t]) => !t.startsWith('anon_inode:') && t !== '/dev/null' && leverdFiles.has(t));
    assert.deepEqual(shared.map(([fd]) => fd).sort(), ['1', '2']);
    assert.equal(shared[0][1].startsWith('pipe:'), true);
    await coldCallTakes(first.pid);

    const refill = await waitFor(() => pooled(leverd.proc.pid).find((p) => p.pid !== first.pid), 'a refill');
    process.kill(refill.pid, 'SIGKILL');
    const replacement = await waitFor(
      () => pooled(leverd.proc.pid).find((p) => ![first.pid, refill.pid].includes(p.pid) && p.ready), 'a replacement');
    await coldCallTakes(replacement.pid);
    c.close();
    fs.rmSync(dir, { recursive: true, force: true });
  } finally {
    await leverd.stop();
  }
});

// Plays leverd's side of a hand-off (python3: Node cannot pass an fd): starts
// `lever-serve --pool-fd`, waits for its "R", sends it an order for the
// service in argv[1] with a listening socket on argv[2] (SCM_RIGHTS), and
// prints the runner's pid and the socket's inode.
const handOffScript = `
import os, socket, struct, subprocess, sys
code, path, serve = sys.argv[1:4]
ours, theirs = socket.socketpair()
p = subprocess.Popen([serve, f"--pool-fd={theirs.fileno()}"], pass_fds=(theirs.fileno(),),
                     env={"PATH": os.environ["PATH"]})
theirs.close()
ours.settimeout(20)
assert ours.recv(1) == b"R"
listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
listener.bind(path)
listener.listen()
argv = [serve, "server.js"]
env = ["LEVEROS_LISTEN_ADDR=unix:" + path, "LEVEROS_LISTEN_FD=3", f"LEVEROS_LISTEN_PID={p.pid}",
       "LEVEROS_INSTANCE_ID=handed", "NODE_OPTIONS=--max-old-space-size=90", "PATH=" + os.environ["PATH"]]
body = b"".join(s.encode() + b"\\0" for s in [serve, code, *argv, *env])
socket.send_fds(ours, [struct.pack("<IIIIQQIIII", 48 + len(body), len(argv), len(env), 0, 0, 0, 0, 0, 0, 0) + body],
                [listener.fileno()])
print(p.pid, os.fstat(listener.fileno()).st_ino, flush=True)
sys.stdin.read()  # until the test is done
p.kill()
`;

test('a lever-serve handed a listening socket keeps it where LEVEROS_LISTEN_FD says, and serves', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lvn-hand-'));
  fs.writeFileSync(path.join(dir, 'server.js'), `
    module.exports = { Where(cb) { cb(null, { cwd: process.cwd(), instance: process.env.LEVEROS_INSTANCE_ID,
                                              argv: process.argv.slice(2) }); } };`);
  const sock = path.join(dir, 's.sock');
  const leverd = spawn('python3', ['-c', handOffScript, dir, sock, leverServe], { stdio: ['pipe', 'pipe', 'inherit'] });
  try {
    let out = '';
    leverd.stdout.on('data', (d) => (out += d));
    const [pid, inode] = (await waitFor(() => out.includes('\n') && out, 'the hand-off')).trim().split(' ');
    await waitFor(() => {
      try {
        return fs.readlinkSync(`/proc/${pid}/fd/3`) === `socket:[${inode}]`;
      } catch {
        return false;
      }
    }, 'the listening socket on fd 3');
    // A call with a fresh client until one is answered: a liblever without
    // socket activation binds the path anew once it has loaded the entry, and
    // a connection made before that waits on the passed socket, unaccepted.
    const where = await waitFor(async () => {
      const c = new Client({ forceHost: `unix:${sock}`, waitForReady: true, timeout: 2000 });
      try {
        return await c.service('dev.lever', 'x').invoke('Where');
      } catch {
        return null;
      } finally {
        c.close();
      }
    }, 'a call');
    assert.deepEqual(where, { cwd: dir, instance: 'handed', argv: ['server.js'] });
  } finally {
    leverd.stdin.end();
    await new Promise((r) => leverd.on('close', r));
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
