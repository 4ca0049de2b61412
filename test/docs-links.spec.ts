import { existsSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { anchorsOf, headingSlug, proseOf, userDocs } from './support/docs.js';

// Every relative link in README.md and docs/**/*.md leads somewhere: the file or folder exists
// and, for a Markdown target, the #anchor is one of its headings. No cluster: this reads the files.

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/** `[text](target)` and `![alt](target)` outside code; absolute URLs (`https:`, `mailto:`) are not checked. */
export function relativeLinks(markdown: string): string[] {
  return [...proseOf(markdown).matchAll(/!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)/g)]
    .map(([, target]) => target)
    .filter((target) => !/^[a-z][a-z0-9+.-]*:/i.test(target));
}

/** The links of `file` (a path from `root`) that lead nowhere, each as `file: target (why)`. */
export function brokenLinks(root: string, file: string, markdown: string, read = (f: string) => readFileSync(f, 'utf8')): string[] {
  const broken: string[] = [];
  for (const target of relativeLinks(markdown)) {
    const [pathPart, anchor] = target.split('#', 2) as [string, string | undefined];
    const resolved = pathPart === '' ? path.join(root, file) : path.resolve(path.dirname(path.join(root, file)), decodeURI(pathPart));
    if (!resolved.startsWith(root + path.sep) && resolved !== root) {
      broken.push(`${file}: ${target} (outside the repository)`);
      continue;
    }
    if (!existsSync(resolved)) {
      broken.push(`${file}: ${target} (no such file)`);
      continue;
    }
    if (anchor === undefined || anchor === '') continue;
    if (statSync(resolved).isDirectory() || !resolved.endsWith('.md')) {
      broken.push(`${file}: ${target} (an anchor into a file that is not Markdown)`);
      continue;
    }
    const text = pathPart === '' ? markdown : read(resolved);
    if (!anchorsOf(text).has(anchor)) broken.push(`${file}: ${target} (no heading with that anchor)`);
  }
  return broken;
}

describe('documentation links', () => {
  const docs = userDocs(root);

  it('reads README.md and the pages under docs/', () => {
    expect(docs.map((doc) => doc.file)).toEqual(expect.arrayContaining(['README.md', 'docs/CHAOS.md', 'docs/pg-pool-compat.md']));
    expect(docs.length).toBeGreaterThan(3);
  });

  it('every relative link in README.md and docs/**/*.md resolves, anchors included', () => {
    expect(docs.flatMap((doc) => brokenLinks(root, doc.file, doc.text))).toEqual([]);
  });

  it('the README links to every page under docs/', () => {
    const linked = new Set(relativeLinks(docs[0].text).map((target) => target.split('#')[0]));
    const pages = docs.slice(1).map((doc) => doc.file);
    expect(pages.filter((page) => !linked.has(page))).toEqual([]);
  });

  describe('the check itself, on made-up text', () => {
    it('slugs headings as GitHub does', () => {
      expect(headingSlug('Query builders (Kysely, Drizzle, Prisma)')).toBe('query-builders-kysely-drizzle-prisma');
      expect(headingSlug('`GET /metrics/db-pool`')).toBe('get-metricsdb-pool');
      expect(headingSlug('PgBouncer (`pgbouncer: true`)')).toBe('pgbouncer-pgbouncer-true');
      expect(headingSlug("The builders' own transactions")).toBe('the-builders-own-transactions');
      expect([...anchorsOf('# A\n\n## Recipes\n\n```md\n## Not a heading\n```\n\n### Recipes\n')]).toEqual(['a', 'recipes', 'recipes-1']);
    });

    it('reports a missing file, a missing anchor, and skips code and absolute URLs', () => {
      const text = [
        '# Page',
        'See [the page](#page), [a gone section](#gone), [the licence](LICENSE), [nothing](no-such.md),',
        '[the chaos rows](docs/CHAOS.md#hung-nodes-sigstop), [off site](https://example.com/x.md) and `[code](nowhere.md)`.',
        '```md',
        '[in a block](nowhere.md)',
        '```',
      ].join('\n');
      expect(brokenLinks(root, 'README.md', text)).toEqual(['README.md: #gone (no heading with that anchor)', 'README.md: no-such.md (no such file)']);
    });
  });
});
