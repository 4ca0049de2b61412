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
  run(ctx: ScenarioContext): Promise<ScenarioOutcome>;
}
