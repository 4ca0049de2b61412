import type { BenchTiming } from './bench.config.js';
import type { Figure } from './bench.results.js';

export interface ScenarioContext {
  timing: BenchTiming;
  smoke: boolean;
  log(message: string): void;
}

export interface ScenarioOutcome {
  method: string;
  figures: Figure[];
  details?: Record<string, unknown>;
}

export interface Scenario {
  id: string;
  title: string;
  /**
   * Set when the scenario runs with every CPU open to every process, not with client and servers
   * on CPUs of their own (bench/bench.affinity.ts): why. The report adds it to the method.
   */
  unpinnedBecause?: string;
  /** How long the scenario may take with `timing`, when more than the bench's default deadline (8 minutes; 90 s for the smoke run). */
  deadlineMs?(timing: BenchTiming): number;
  run(ctx: ScenarioContext): Promise<ScenarioOutcome>;
}
