'use strict';
// The service runtime (reference §10.1): serves the functions of a handler
// object (the module exported by a service's jsEntry).
//
// Methods: every function property of the object, own or inherited (up to
// Object.prototype), whose name does not start with `_`; `this` is the object.
// They are found when the server starts; the function itself is looked up on
// every call, so reassigning one takes effect.
//
// Unary (name not ending in Chan/_chan/chan): fn([resource,] ...args, cb)
//   - cb(err, result) as in the original; or
//   - return a Promise (async functions): its value is the result, a rejection
//     the error; or
//   - return any other value except undefined: that is the result.
//   Whatever comes first answers. A function that declares a parameter in the
//   callback's position (fn.length > number of arguments) answers through the
//   callback: its return value is ignored, and so is a Promise resolving to
//   undefined (`(n, cb) => setTimeout(...)` must not answer with the timer).
//   The resource name is prepended when the call's URL has one (the
//   original's rule). NewResource/CloseResource get (resource, cb).
// Streaming: fn(stream, [resource,] ...args). The call ends with
// stream.end() (or stream.destroy(err) for an error); a handler that returns a
// Promise ends it when the Promise settles, if it has not ended yet.
// Errors: an Error sends its message, a Buffer bytes, other values as they are.
const native = require('./native');
const { LeverStream, errorValue } = require('./stream');
const { isChanMethod } = require('./url');

const RESOURCE_HOOKS = new Set(['NewResource', 'CloseResource']);
const INTERNAL = 13;
const NOT_FOUND = 5;
const CANCELLED = 1;

function methodNames(handler) {
  const names = [];
  const seen = new Set();
  for (let o = handler; o && o !== Object.prototype && o !== Function.prototype; o = Object.getPrototypeOf(o)) {
    for (const name of Object.getOwnPropertyNames(o)) {
      if (seen.has(name)) continue;
      seen.add(name);
      if (name === 'constructor' || name.startsWith('_')) continue;
      const d = Object.getOwnPropertyDescriptor(o, name);
      if (d && typeof d.value === 'function') names.push(name);
    }
  }
  return names;
}

function isThenable(v) {
  return v !== null && (typeof v === 'object' || typeof v === 'function') && typeof v.then === 'function';
}

function replyTo(call, err, result) {
  try {
    if (err) call.replyError(errorValue(err));
    else call.reply(result === undefined ? null : result);
  } catch (e) {
    // The result or error could not be encoded.
    try {
      call.fail(INTERNAL, `Invalid reply: ${e.message}`);
    } catch {
      // already answered
    }
  }
}

function unaryDispatcher(handler, name, open) {
  const prepend = !RESOURCE_HOOKS.has(name);
  return (call, args, resource) => {
    const fn = handler[name];
    if (typeof fn !== 'function') {
      call.fail(NOT_FOUND, 'Invalid method');
      return;
    }
    let answered = false;
    open.add(call);
    const cb = (err, result) => {
      if (answered) return;
      answered = true;
      if (!open.delete(call)) return; // failed by stop() meanwhile
      replyTo(call, err, result);
    };
    const callArgs = resource && prepend ? [resource, ...args, cb] : [...args, cb];
    let ret;
    try {
      ret = fn.apply(handler, callArgs);
    } catch (err) {
      cb(err || new Error('handler threw'));
      return;
    }
    // A function that declares a parameter where the callback goes answers
    // through it: what it returns (a timer, a request, ...) is not the result.
    const usesCallback = fn.length >= callArgs.length;
    if (isThenable(ret)) {
      ret.then(
        (v) => {
          if (v !== undefined || !usesCallback) cb(null, v);
        },
        (err) => cb(err || new Error('handler rejected')));
    } else if (ret !== undefined && !usesCallback) {
      cb(null, ret);
    }
  };
}

function streamDispatcher(handler, name, open) {
  return (nativeStream, args, resource) => {
    const stream = new LeverStream(nativeStream, { server: true });
    open.add(stream);
    stream.on('close', () => open.delete(stream));
    const fn = handler[name];
    if (typeof fn !== 'function') {
      stream.destroy(new Error('Invalid method'));
      return;
    }
    // An 'error' event nobody listens to must not kill the service: a client
    // that cancels or fails is a normal event for a server.
    stream.on('error', () => {});
    const callArgs = resource ? [stream, resource, ...args] : [stream, ...args];
    let ret;
    try {
      ret = fn.apply(handler, callArgs);
    } catch (err) {
      stream.destroy(err || new Error('handler threw'));
      return;
    }
    if (isThenable(ret)) {
      ret.then(
        () => {
          if (!stream.writableEnded && !stream.destroyed) stream.end();
        },
        (err) => {
          if (!stream.destroyed) stream.destroy(err || new Error('handler rejected'));
        });
    }
  };
}

// Running servers stay referenced: dropping the Server object must not stop
// (or free) a server that is serving.
const running = new Set();

class Server {
  // options.listenAddr: "unix:/abs/path.sock" or "host:port" (port 0: any);
  //   default LEVEROS_LISTEN_ADDR, else 0.0.0.0:3837.
  // options.maxWorkers: liblever's handler threads. Ours only hand each call
  //   to the JS thread and never block, so a few suffice (default 4); the
  //   library's default (a pool growing to 1024 under a burst) costs memory
  //   that a small instance (50 MB by default) does not have.
  constructor(handler, options = {}) {
    if (handler === null || (typeof handler !== 'object' && typeof handler !== 'function')) {
      throw new TypeError('The handler must be an object (the module exports)');
    }
    this.handler = handler;
    this.methods = methodNames(handler);
    this._native = new native.Server(options.listenAddr || undefined, options.maxWorkers || 4);
    // Calls and streams not answered yet: stop() ends them after its grace.
    this._open = new Set();
    for (const name of this.methods) {
      if (isChanMethod(name)) this._native.handle(name, true, streamDispatcher(handler, name, this._open));
      else this._native.handle(name, false, unaryDispatcher(handler, name, this._open));
    }
    this.port = 0;
    this._running = false;
  }

  // Binds and serves; returns the bound TCP port (0 for unix sockets).
  // A running server keeps the process alive.
  start() {
    this.port = this._native.start();
    this._running = true;
    running.add(this);
    return this.port;
  }

  // Stops accepting calls, gives calls in flight `graceMs`, then cancels them
  // (also those whose handler never answers).
  stop(graceMs = 5000, cb) {
    const p = new Promise((resolve) => {
      const timer = setTimeout(() => {
        for (const c of this._open) {
          if (c instanceof LeverStream) c.destroy();
          else c.fail(CANCELLED, 'the service is stopping');
        }
        this._open.clear();
      }, graceMs);
      this._native.stop(graceMs, () => {
        clearTimeout(timer);
        this._running = false;
        running.delete(this);
        resolve();
      });
    });
    if (cb) p.then(() => cb(), cb);
    return p;
  }
}

// serve(handler, options) -> started Server.
function serve(handler, options) {
  const s = new Server(handler, options);
  s.start();
  return s;
}

module.exports = { Server, serve, methodNames };
