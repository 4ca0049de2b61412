// Tracing set up the way OpenTelemetry's Node.js docs do it for a CommonJS app: loaded with
// `node --require` before the application, so @opentelemetry/instrumentation-pg patches pg
// whichever way it is loaded later (here: by the ES module build of nestjs-pg-pools, which Node
// picks for require() through the module-sync export condition). Spans go to memory.
import { registerInstrumentations } from '@opentelemetry/instrumentation';
import { PgInstrumentation } from '@opentelemetry/instrumentation-pg';
import { InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { NodeTracerProvider } from '@opentelemetry/sdk-trace-node';

const exporter = new InMemorySpanExporter();
new NodeTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] }).register();
registerInstrumentations({ instrumentations: [new PgInstrumentation()] });
(globalThis as { otelSpans?: InMemorySpanExporter }).otelSpans = exporter;
