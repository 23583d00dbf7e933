'use strict';
// LeverStream: one side of a streaming call as an object-mode Duplex.
//
//   stream.write(msg)     sends a message (a Buffer travels as bytes)
//   stream.end()          client: half-close; server: end the call (OK)
//   stream.on('data')     each message; 'end' when the peer is done;
//   for await (...)       'error' (a LeverError) when the peer sent an error
//   stream.destroy(err)   client: cancel; server: end with an application
//                         error made from `err` (or cancel without one)
//
// A null message cannot travel through a Node stream: write(null) sends one,
// and a received null message is read as `undefined`.
const { Duplex } = require('stream');
const { fromNative, LeverError } = require('./errors');

const NULL_MSG = Object.freeze({ leverNullMessage: true });

// What an application error becomes on the wire (the original's rule): an
// Error sends its message (its `remote` value if it carries one), a Buffer
// stays bytes, other values go as they are.
function errorValue(err) {
  if (err instanceof LeverError && err.remote !== undefined) return err.remote;
  if (err instanceof Error) return err.message || String(err);
  return err;
}

class LeverStream extends Duplex {
  constructor(nativeStream, { server = false, context } = {}) {
    super({ objectMode: true, allowHalfOpen: true, autoDestroy: true, emitClose: true });
    this._native = nativeStream;
    this._server = server;
    this._context = context;
    this._reading = false;
    this._readDone = false;
    this._writeDone = false;
    this._released = false;
    this._onRecv = this._onRecv.bind(this);
  }

  // Server side: {url, environment, service, resource, method, sourceEnvironment, deadline}.
  get context() {
    if (this._context === undefined && this._native) this._context = this._native.context();
    return this._context;
  }

  // `for await` reads without destroying the stream when the loop ends, so
  // a handler can still write after the client half-closed (Node's default
  // iterator would destroy the writable side too). Leaving the loop early
  // leaves the stream open: destroy() it to cancel.
  [Symbol.asyncIterator]() {
    return this.iterator({ destroyOnReturn: false });
  }

  write(chunk, encoding, cb) {
    return super.write(chunk === null ? NULL_MSG : chunk, encoding, cb);
  }

  // Writes never block the event loop: the messages are queued in liblever
  // and the callback runs once gRPC wrote them; messages written meanwhile
  // are buffered by the Writable and go together (_writev).
  _write(chunk, _encoding, cb) {
    this._send([chunk === NULL_MSG ? null : chunk], cb);
  }

  _writev(chunks, cb) {
    this._send(chunks.map(({ chunk }) => (chunk === NULL_MSG ? null : chunk)), cb);
  }

  _send(messages, cb) {
    try {
      this._native.send(messages, (info) => cb(info ? fromNative(info) : undefined));
    } catch (err) {
      cb(err); // a message that cannot be encoded (a function, a cycle, ...)
    }
  }

  _final(cb) {
    this._writeDone = true;
    if (!this._released) this._native.closeSend();
    cb();
  }

  _read() {
    if (this._reading || this._readDone || this._released) return;
    this._reading = true;
    this._native.recv(this._onRecv);
  }

  _onRecv(info, msg, ended) {
    this._reading = false;
    if (this.destroyed) return;
    if (info) {
      this._readDone = true;
      if (this._server && this._writeDone && info.code !== 'REMOTE') {
        this.push(null);  // we ended the call ourselves
        return;
      }
      this._remoteFailed = true;
      this.destroy(fromNative(info));
      return;
    }
    if (ended) {
      this._readDone = true;
      this.push(null);
      return;
    }
    this.push(msg === null ? undefined : msg);
  }

  _destroy(err, cb) {
    if (!this._released) {
      this._released = true;
      const done = this._readDone && this._writeDone;
      if (!done && !this._remoteFailed) {
        if (this._server && err) {
          try {
            this._native.endWithError(errorValue(err));
          } catch {
            this._native.endWithError(String(err && err.message));
          }
        } else if (!this._server || !this._writeDone) {
          this._native.cancel();
        }
      }
      this._native.free();
    }
    cb(err);
  }
}

module.exports = { LeverStream, errorValue };
