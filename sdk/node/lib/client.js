'use strict';
// The client (reference §10.2) with Promise forms and Duplex streams.
const native = require('./native');
const { LeverStream } = require('./stream');
const { fromNative, usage } = require('./errors');
const { isChanMethod, parseLeverURL, formatLeverURL } = require('./url');

// Splits `...args, cb?` and runs `start(done)` with a callback or a Promise.
function complete(cb, start) {
  if (cb) {
    start(cb);
    return undefined;
  }
  return new Promise((resolve, reject) => start((err, v) => (err ? reject(err) : resolve(v))));
}

function splitCallback(argsAndCb) {
  const n = argsAndCb.length;
  if (n > 0 && typeof argsAndCb[n - 1] === 'function') return [argsAndCb.slice(0, n - 1), argsAndCb[n - 1]];
  return [argsAndCb, undefined];
}

// An AbortSignal as the last argument (before the callback) is not sent: it
// cancels the call.
function splitSignal(args) {
  const n = args.length;
  if (n > 0 && args[n - 1] instanceof AbortSignal) return [args.slice(0, n - 1), args[n - 1]];
  return [args, undefined];
}

// What an aborted call fails with, as Node's own APIs do.
function abortError(signal, site) {
  const err = new Error('The operation was aborted', { cause: signal.reason });
  err.name = 'AbortError';
  err.code = 'ABORT_ERR';
  if (site && site.stack) err.stack = ['AbortError: The operation was aborted', ...site.stack.split('\n').slice(1)].join('\n');
  return err;
}

class Client {
  // options.forceHost: dial every call here ("host:port" or "unix:/path.sock").
  //   Without it: internal envs and the own env go to
  //   LEVEROS_INTERNAL_RPC_GATEWAY when set, others to LEVEROS_IP_PORT or
  //   127.0.0.1:8080. It can also be set later: `client.forceHost = '...'`.
  // options.timeout: deadline of each call in ms (0: none).
  // options.waitForReady: a call waits (until its timeout) for a target that
  //   cannot be reached yet instead of failing UNAVAILABLE at once.
  // options.protoJson: send proto-JSON as Lever OS 0.1 (to call original servers).
  constructor(options = {}) {
    if (options === null || typeof options !== 'object') throw new TypeError('options must be an object');
    this.forceHost = options.forceHost || '';
    this.timeout = options.timeout || 0;
    this.waitForReady = Boolean(options.waitForReady);
    this.protoJson = Boolean(options.protoJson);
    this._native = null;
    this._nativeKey = '';
  }

  service(env, service) {
    if (typeof service !== 'string' || !service) throw new TypeError('service must be a non-empty string');
    return new Endpoint(this, env || '', service, '');
  }

  resource(env, service, resource) {
    if (typeof service !== 'string' || !service) throw new TypeError('service must be a non-empty string');
    if (typeof resource !== 'string') throw new TypeError('resource must be a string');
    return new Endpoint(this, env || '', service, resource);
  }

  invokeURL(url, ...argsAndCb) {
    const site = new Error();
    const [args, cb] = splitCallback(argsAndCb);
    return this._invoke(url, args, cb, false, site);
  }

  invokeChanURL(url, ...argsAndCb) {
    const site = new Error();
    const [args, cb] = splitCallback(argsAndCb);
    return this._invoke(url, args, cb, true, site);
  }

  // Releases the connections once the calls in flight have ended.
  close() {
    if (this._native) this._native.close();
    this._native = null;
  }

  _nativeClient() {
    const key = `${this.forceHost || ''}\n${this.protoJson}`;
    if (this._native === null || this._nativeKey !== key) {
      if (this._native) this._native.close();
      this._native = new native.Client(this.forceHost || undefined, undefined, this.protoJson);
      this._nativeKey = key;
    }
    return this._native;
  }

  _invoke(target, argsAndSignal, cb, streaming, site) {
    const [args, signal] = streaming ? [argsAndSignal, undefined] : splitSignal(argsAndSignal);
    return complete(cb, (done) => {
      let url;
      try {
        const u = typeof target === 'string' ? parseLeverURL(target) : { ...target };
        if (streaming && !isChanMethod(u.method)) throw usage('Use invoke for non-streaming methods', undefined, site);
        if (!streaming && isChanMethod(u.method)) throw usage('Use invokeChan for streaming methods', undefined, site);
        if (!u.environment) u.environment = (process.env.LEVEROS_ENVIRONMENT || '').toLowerCase();
        if (!u.environment) throw usage('Environment not specified and cannot be deduced', undefined, site);
        url = formatLeverURL(u);
      } catch (err) {
        process.nextTick(done, err);
        return;
      }
      const c = this._nativeClient();
      const { timeout, waitForReady } = this;
      try {
        if (!streaming) {
          if (signal && signal.aborted) {
            process.nextTick(done, abortError(signal, site));
            return;
          }
          let ended = false;
          let onAbort;
          const handle = c.invoke(url, args, timeout, waitForReady, (info, result) => {
            if (ended) return; // aborted: already answered
            ended = true;
            if (signal) signal.removeEventListener('abort', onAbort);
            if (info) done(fromNative(info, site));
            else done(null, result);
          });
          if (signal && handle !== undefined) {
            onAbort = () => {
              if (ended) return;
              ended = true;
              c.cancelInvoke(handle); // the server sees the cancellation
              done(abortError(signal, site));
            };
            signal.addEventListener('abort', onAbort, { once: true });
          }
        } else {
          c.openStream(url, args, timeout, waitForReady, (info, ns) => {
            if (info) done(fromNative(info, site));
            else done(null, new LeverStream(ns, { server: false }));
          });
        }
      } catch (err) {
        // Arguments that cannot be encoded (a function, a cycle, ...).
        process.nextTick(done, err);
      }
    });
  }
}

class Endpoint {
  constructor(client, env, service, resource) {
    this._client = client;
    this.environment = env.toLowerCase();
    this.service = service;
    this.resource = resource;
  }

  // invoke(method, ...args[, cb(err, reply)]): a Promise without a callback.
  invoke(method, ...argsAndCb) {
    const site = new Error();
    const [args, cb] = splitCallback(argsAndCb);
    return this._client._invoke(this._url(method), args, cb, false, site);
  }

  // invokeChan(method, ...args[, cb(err, stream)]): a Promise of a LeverStream without a callback.
  invokeChan(method, ...argsAndCb) {
    const site = new Error();
    const [args, cb] = splitCallback(argsAndCb);
    return this._client._invoke(this._url(method), args, cb, true, site);
  }

  _url(method) {
    if (typeof method !== 'string' || !method) throw new TypeError('method must be a non-empty string');
    return { environment: this.environment, service: this.service, resource: this.resource, method };
  }
}

module.exports = { Client, Endpoint };
