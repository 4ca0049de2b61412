import { isInt, nonEmptyString, option, type Field } from './option.js';
import { MAX_TIMER_MS } from './timer-limit.js';

const pingTimeout = option({
  type: 'ms ≥ 1',
  min: 1,
  max: MAX_TIMER_MS,
  default: 1000,
  doc: 'Deadline of each node\'s ping; a slower node is `down` with `timeout of <n>ms exceeded`.',
  check: (value: unknown, at: Field) => {
    if (!isInt(value, 1, MAX_TIMER_MS)) at.fail('an integer number of milliseconds from 1 and up', value);
    return value;
  },
});

const database = option({
  type: 'string',
  defaultDoc: 'the default database',
  doc: 'Database to check (the `name` given to `PoolModule.forRoot`).',
  check: (value: unknown, at: Field): string | undefined => nonEmptyString(value, at),
});

/** Options of `PoolHealthIndicator.pingCheck()`. */
export const PING_CHECK_OPTIONS = {
  database,
  node: option({ type: 'string', default: 'primary', doc: 'Node to ping: `primary` (whatever its name) or a node name such as `replica-1`.', check: nonEmptyString }),
  timeoutMs: pingTimeout,
} as const;

/** Options of `PoolHealthIndicator.check()`. */
export const HEALTH_CHECK_OPTIONS = {
  database,
  timeoutMs: pingTimeout,
  requireReplicas: option({
    type: 'boolean | integer ≥ 0',
    default: false,
    doc: 'Healthy replicas the check needs to stay `up`: `false` none, `true` every configured replica, a number at least that many.',
    check: (value: unknown, at: Field): boolean | number => {
      if (typeof value === 'boolean' || isInt(value, 0, Number.MAX_SAFE_INTEGER)) return value as boolean | number;
      return at.fail('true, false or an integer from 0 and up', value);
    },
  }),
} as const;
