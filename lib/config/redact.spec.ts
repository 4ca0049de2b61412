import { describeValue, redactSecrets, redactUrl, scrubSecrets } from './redact.js';

describe('redactSecrets', () => {
  it.each([
    ['postgres://app:s3cret@db:5432/app', 'postgres://app:***@db:5432/app'],
    ['connect postgres://app:pa/ss@db/app failed', 'connect postgres://app:***@db/app failed'],
    ['postgres://app:p@ss@db/app', 'postgres://app:***@db/app'],
    ['a=postgres://u:one@h1/x,postgres://v:two@h2/y', 'a=postgres://u:***@h1/x,postgres://v:***@h2/y'],
    ['host=db password=s3cret user=app', 'host=db password=*** user=app'],
    ["password='with space' user=app", 'password=*** user=app'],
    ['postgres://db/app?password=s3cret&sslmode=disable', 'postgres://db/app?password=***&sslmode=disable'],
    ['postgres://app@db:5432/app', 'postgres://app@db:5432/app'],
  ])('%s', (text, expected) => {
    expect(redactSecrets(text)).toBe(expected);
  });
});

describe('redactUrl', () => {
  it.each([
    ['postgres://app:pa ss w#rd@db:1/app', 'postgres://app:***@db:1/app'],
    ['postgres://app:a@b@c/d#e@db/app', 'postgres://app:***@db/app'],
    ['app:secret@db', 'app:***@db'],
    ['postgres://app@db/app', 'postgres://app@db/app'],
    ['postgres://db/app?password=x', 'postgres://db/app?password=***'],
  ])('%s', (url, expected) => {
    expect(redactUrl(url)).toBe(expected);
  });
});

describe('scrubSecrets', () => {
  it('removes known secrets wherever they appear, but not trivially short ones', () => {
    expect(scrubSecrets('auth failed for hunter22 (hunter22)', ['hunter22', undefined, 'ab'])).toBe('auth failed for *** (***)');
    expect(scrubSecrets('ab cd', ['ab'])).toBe('ab cd');
  });
});

describe('describeValue', () => {
  it.each([
    [-3, '-3 (number)'],
    ['abc', '"abc" (string)'],
    [true, 'true (boolean)'],
    [null, 'null'],
    [undefined, 'undefined'],
    [[1, 2], 'an array of 2'],
    [{}, 'an empty object {}'],
    [{ a: 1, b: 2 }, 'an object with keys a, b'],
    [() => 1, 'a function'],
    ['postgres://app:bad pw@db/app', '"postgres://app:***@db/app" (string)'],
  ])('%p', (value, expected) => {
    expect(describeValue(value)).toBe(expected);
  });

  it('hides a secret entirely', () => {
    expect(describeValue('s3cret', true)).toBe('[redacted]');
  });
});
