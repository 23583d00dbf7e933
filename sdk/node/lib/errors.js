'use strict';

// The error every failed call surfaces.
//   code:   'REMOTE' for an application error (the remote handler failed;
//           `remote` holds the value it sent), else the gRPC status name of a
//           platform error ('UNAVAILABLE', 'NOT_FOUND', 'INVALID_ARGUMENT',
//           'DEADLINE_EXCEEDED', ...).
//   status: the gRPC status number (2 for application errors).
//   remote: the remote error value (string, object, Buffer, ...) or undefined.
class LeverError extends Error {
  constructor(message, code, status, remote) {
    super(message);
    this.code = code;
    this.status = status;
    if (remote !== undefined) this.remote = remote;
  }
  get name() {
    return 'LeverError';
  }
}

// The message of an application error: a string as is (the original's
// `new Error(value)`), bytes as UTF-8, anything else as JSON.
function remoteMessage(remote) {
  if (typeof remote === 'string') return remote;
  if (Buffer.isBuffer(remote)) return remote.toString('utf8');
  try {
    const s = JSON.stringify(remote, (k, v) => (typeof v === 'bigint' ? v.toString() : v));
    return s === undefined ? String(remote) : s;
  } catch {
    return String(remote);
  }
}

// Turns the addon's {message, code, status, remote} into a LeverError whose
// stack is the caller's (`site` was made before the native call).
function fromNative(info, site) {
  const message = info.code === 'REMOTE' ? remoteMessage(info.remote) : info.message;
  const err = new LeverError(message, info.code, info.status, info.remote);
  if (site && site.stack) {
    const lines = site.stack.split('\n');
    lines[0] = `LeverError: ${message}`;
    err.stack = lines.join('\n');
  }
  return err;
}

// A LeverError for a misuse found in JS (wrong call style, no environment).
function usage(message, code = 'INVALID_ARGUMENT', site) {
  const err = new LeverError(message, code, code === 'INVALID_ARGUMENT' ? 3 : 2);
  if (site && site.stack) {
    const lines = site.stack.split('\n');
    lines[0] = `LeverError: ${message}`;
    err.stack = lines.join('\n');
  }
  return err;
}

module.exports = { LeverError, fromNative, usage, remoteMessage };
