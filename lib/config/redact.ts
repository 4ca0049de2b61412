const URL_PASSWORD = /(\/\/[^:/?#@\s,]*:)[^\s,]*@/g;
const KEY_VALUE_PASSWORD = /(password\s*[=:]\s*)("[^"]*"|'[^']*'|[^\s,;&]+)/gi;
const LOOKS_LIKE_URL = /^\s*[a-z][a-z0-9+.-]*:/i;

/** Replaces the password in a connection URL or `password=…` text with `***`. */
export function redactSecrets(text: string): string {
  return text.replace(URL_PASSWORD, '$1***@').replace(KEY_VALUE_PASSWORD, '$1***');
}

/**
 * Hides the password of one connection URL, even a malformed one (spaces, `/`, `#` or `@` in
 * the password): everything between the first `:` after `//` and the last `@` becomes `***`.
 */
export function redactUrl(url: string): string {
  const at = url.lastIndexOf('@');
  let out = url;
  if (at !== -1) {
    const slashes = url.indexOf('//');
    const start = slashes !== -1 && slashes < at ? slashes + 2 : 0;
    const colon = url.indexOf(':', start);
    if (colon !== -1 && colon < at) out = `${url.slice(0, colon + 1)}***${url.slice(at)}`;
  }
  return out.replace(KEY_VALUE_PASSWORD, '$1***');
}

/** Removes every occurrence of the given secrets from a text (for driver errors that echo them). */
export function scrubSecrets(text: string, secrets: Iterable<string | undefined>): string {
  let out = redactSecrets(text);
  for (const secret of secrets) {
    if (secret && secret.length >= 3) out = out.split(secret).join('***');
  }
  return out;
}

/**
 * Describes a value for an error message: `-3 (number)`, `"abc" (string)`, `null`. Strings are
 * redacted (a URL-shaped string as a whole, so a malformed one cannot leak its password).
 */
export function describeValue(value: unknown, secret = false): string {
  if (secret) return '[redacted]';
  if (value === null) return 'null';
  if (value === undefined) return 'undefined';
  if (typeof value === 'string') {
    const shown = LOOKS_LIKE_URL.test(value) && value.includes('@') ? redactUrl(value) : redactSecrets(value);
    return `${JSON.stringify(shown)} (string)`;
  }
  if (typeof value === 'number' || typeof value === 'boolean' || typeof value === 'bigint') {
    return `${String(value)} (${typeof value})`;
  }
  if (typeof value === 'function') return `a function`;
  if (Array.isArray(value)) return `an array of ${value.length}`;
  try {
    const keys = Object.keys(value as object);
    return keys.length ? `an object with keys ${keys.join(', ')}` : 'an empty object {}';
  } catch {
    return typeof value;
  }
}
