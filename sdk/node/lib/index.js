'use strict';
// leveros: the Lever client and service runtime for Node.js.
const { Client, Endpoint } = require('./client');
const { Server, serve } = require('./server');
const { LeverStream } = require('./stream');
const { LeverError } = require('./errors');
const { isChanMethod, parseLeverURL, formatLeverURL } = require('./url');

module.exports = {
  Client,
  Endpoint,
  Server,
  serve,
  LeverStream,
  LeverError,
  isChanMethod,
  parseLeverURL,
  formatLeverURL,
  // The instance's identity (empty outside Lever), as the original's globals.
  ownEnvironment: process.env.LEVEROS_ENVIRONMENT || '',
  ownService: process.env.LEVEROS_SERVICE || '',
  ownInstanceID: process.env.LEVEROS_INSTANCE_ID || '',
};
