'use strict';
// Lever URLs (reference §2.4, §4.2) and the streaming-name rule (§2.7).

// A method is streaming iff its name ends with `Chan`, ends with `_chan`, or is `chan`.
function isChanMethod(name) {
  return name === 'chan' || name.endsWith('Chan') || name.endsWith('_chan');
}

// lever://env/service[/resource]/method or /service[/resource]/method.
// The resource is everything between the first `/` after the service and the
// last `/` before the method. The environment is lowercased (as the original).
function parseLeverURL(str) {
  if (typeof str !== 'string') throw new TypeError('The Lever URL must be a string');
  let env = '';
  let rest;
  if (str.startsWith('lever://')) {
    const s = str.slice('lever://'.length);
    const slash = s.indexOf('/');
    if (slash < 0) throw new TypeError(`Invalid Lever URL: ${str}`);
    env = s.slice(0, slash).toLowerCase();
    rest = s.slice(slash);
  } else if (str.startsWith('/')) {
    rest = str;
  } else {
    throw new TypeError(`Invalid Lever URL: ${str}`);
  }
  const path = rest.slice(1);
  const first = path.indexOf('/');
  const last = path.lastIndexOf('/');
  if (first <= 0 || last === path.length - 1) throw new TypeError(`Invalid Lever URL: ${str}`);
  return {
    environment: env,
    service: path.slice(0, first),
    resource: first === last ? '' : path.slice(first + 1, last),
    method: path.slice(last + 1),
  };
}

function formatLeverURL({ environment, service, resource, method }) {
  const tail = `/${service}/${resource || ''}/${method}`;
  return environment ? `lever://${environment}${tail}` : tail;
}

module.exports = { isChanMethod, parseLeverURL, formatLeverURL };
