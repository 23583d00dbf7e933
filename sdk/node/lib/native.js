'use strict';
// Loads the addon (build/Release/lever.node) with an error that says how to fix it.
const path = require('path');

let native;
try {
  native = require(path.join(__dirname, '..', 'build', 'Release', 'lever.node'));
} catch (err) {
  const e = new Error(
    `leveros: cannot load the native addon (${err.message}).\n` +
      'Build it with `npm install` (or `npm run build`) in the leveros package, with\n' +
      'LEVER_BUILD_DIR=<cmake build dir holding liblever.so>; see docs/sdk-node.md.');
  e.code = 'ERR_LEVER_ADDON';
  e.cause = err;
  throw e;
}
module.exports = native;
