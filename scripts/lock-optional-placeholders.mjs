// Keeps `npm ci` working with this machine's npm registry, which answers 404 for the
// other-platform native bindings of some packages (e.g. @unrs/resolver-binding-darwin-arm64,
// pulled in by jest through unrs-resolver). `npm install` silently leaves such optional packages
// out of package-lock.json, and `npm ci` then refuses the lockfile ("Missing: ... from lock file").
//
// This adds a placeholder entry (version, os, cpu, optional) for each missing platform binding,
// so `npm ci` validates the lockfile and skips the package as not for this platform, exactly as it
// would with the real entry. Run it after every `npm install` that rewrites package-lock.json:
//
//   node scripts/lock-optional-placeholders.mjs [path/to/package-lock.json]
import { readFileSync, writeFileSync } from 'node:fs';

const file = process.argv[2] ?? 'package-lock.json';
const lock = JSON.parse(readFileSync(file, 'utf8'));
const packages = lock.packages;
const platform = /-(android|darwin|freebsd|linux|openharmony|win32|sunos|aix|netbsd|openbsd)-(arm64|arm|ia32|x64|loong64|ppc64|riscv64|s390x|wasm32)(?:-(gnu|gnueabihf|musl|musleabihf|msvc|eabi))?$/;

const added = [];
for (const [location, entry] of Object.entries(packages)) {
  for (const [name, version] of Object.entries(entry.optionalDependencies ?? {})) {
    const parentDir = location === '' ? '' : `${location}/`;
    if (packages[`${parentDir}node_modules/${name}`] || packages[`node_modules/${name}`]) continue;
    const match = platform.exec(name);
    if (!match) {
      console.error(`Cannot add a placeholder for ${name} (optional dependency of ${location}) because its platform is not in its name. Please add its lock entry by hand.`);
      process.exitCode = 1;
      continue;
    }
    const [, os, cpu, abi] = match;
    const placeholder = { version, cpu: [cpu], dev: entry.dev, license: entry.license, optional: true, os: [os] };
    if (os === 'linux' && abi?.startsWith('gnu')) placeholder.libc = ['glibc'];
    if (os === 'linux' && abi?.startsWith('musl')) placeholder.libc = ['musl'];
    if (!placeholder.dev) delete placeholder.dev;
    packages[`node_modules/${name}`] = placeholder;
    added.push(`${name}@${version}`);
  }
}

if (added.length === 0) {
  console.log(`${file}: nothing to add`);
  process.exit();
}
const sorted = Object.fromEntries(Object.entries(packages).sort(([a], [b]) => (a === '' ? -1 : b === '' ? 1 : a.localeCompare(b, 'en'))));
writeFileSync(file, `${JSON.stringify({ ...lock, packages: sorted }, null, 2)}\n`);
console.log(`${file}: added ${added.length} placeholder(s): ${added.join(', ')}`);
