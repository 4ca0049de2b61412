import { DatabaseService } from './database.service.js';
import { getClusterToken, getDatabaseToken, getPoolOptionsToken, getPoolToken, recommendPoolSize } from './pool.utils.js';

describe('recommendPoolSize', () => {
  it('is cores × 2 + spindles (seed 004)', () => {
    expect(recommendPoolSize({ cores: 4, spindles: 1 })).toBe(9);
    expect(recommendPoolSize({ cores: 8, spindles: 0 })).toBe(16);
    expect(recommendPoolSize({ cores: 2 })).toBe(5);
  });

  it.each([
    [{ cores: 0 }, 'Expected `cores` to be an integer from 1 and up, got 0 (number).'],
    [{ cores: 2.5 }, 'Expected `cores` to be an integer from 1 and up, got 2.5 (number).'],
    [{ cores: '4' }, 'Expected `cores` to be an integer from 1 and up, got "4" (string).'],
    [{ cores: 4, spindles: -1 }, 'Expected `spindles` to be an integer from 0 and up, got -1 (number).'],
  ])('rejects %p', (input, message) => {
    expect(() => recommendPoolSize(input as { cores: number })).toThrow(new TypeError(message));
  });
});

describe('tokens', () => {
  it('uses the DatabaseService class for the default database and derived strings for named ones', () => {
    expect(getDatabaseToken()).toBe(DatabaseService);
    expect(getDatabaseToken('default')).toBe(DatabaseService);
    expect(getDatabaseToken('analytics')).toBe('analyticsDatabaseService');
  });

  it('derives pool, options and cluster tokens per database and role', () => {
    expect(getPoolToken()).toBe('nestjs-pg-pools:default:primary');
    expect(getPoolToken('analytics', 'replicas')).toBe('nestjs-pg-pools:analytics:replicas');
    expect(getPoolOptionsToken('analytics')).toBe('nestjs-pg-pools:analytics:options');
    expect(getClusterToken()).toBe('nestjs-pg-pools:default:cluster');
    expect(new Set([getPoolToken('a'), getPoolToken('b'), getPoolToken('a', 'replicas')]).size).toBe(3);
  });
});
