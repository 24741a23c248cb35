/**
 * Prometheus metrics in the text exposition format (0.0.4), kept by hand: a
 * few counters and gauges do not justify a client library.
 */
import { isFinalState, type Supervisor, type TaskInfo } from '@overthere/core';

/** Content type of the text exposition format. */
export const METRICS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

/** Counters the API keeps; gauges are read from the supervisor when scraped. */
export interface ApiMetrics {
  /** Count one HTTP request once its response is done. */
  countRequest(method: string, route: string, status: number): void;
  /** A counter of bytes of task output sent to clients in `format` (cheap to call per write). */
  outputBytes(format: string): (bytes: number) => void;
  /** A long-lived stream (output follow or attach) opened (+1) or closed (-1). */
  trackStream(kind: 'output' | 'attach', delta: 1 | -1): void;
  /** The exposition text. */
  render(): string;
  /** Stop listening to the supervisor. */
  dispose(): void;
}

function escapeLabel(value: string): string {
  return value.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

function labels(values: Record<string, string>): string {
  const parts = Object.entries(values).map(([key, value]) => `${key}="${escapeLabel(value)}"`);
  return parts.length === 0 ? '' : `{${parts.join(',')}}`;
}

class Family {
  readonly samples = new Map<string, { labels: Record<string, string>; value: number }>();
  constructor(
    readonly name: string,
    readonly type: 'counter' | 'gauge',
    readonly help: string,
  ) {}

  add(values: Record<string, string>, delta: number): void {
    this.sample(values).value += delta;
  }

  sample(values: Record<string, string>): { labels: Record<string, string>; value: number } {
    const key = labels(values);
    let sample = this.samples.get(key);
    if (!sample) {
      sample = { labels: values, value: 0 };
      this.samples.set(key, sample);
    }
    return sample;
  }

  render(lines: string[]): void {
    lines.push(`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} ${this.type}`);
    for (const [key, sample] of this.samples) {
      lines.push(`${this.name}${key} ${sample.value}`);
    }
  }
}

/** Create the metrics for one API registration, fed by the supervisor's events. */
export function createApiMetrics(supervisor: Supervisor): ApiMetrics {
  const created = new Family('overthere_tasks_created_total', 'counter', 'Tasks created.');
  const restarted = new Family(
    'overthere_task_restarts_total',
    'counter',
    'Runs started again by a restart policy.',
  );
  const ended = new Family(
    'overthere_tasks_ended_total',
    'counter',
    'Tasks that reached a final state, by state.',
  );
  const requests = new Family(
    'overthere_http_requests_total',
    'counter',
    'HTTP requests answered, by method, route and status.',
  );
  const outputBytes = new Family(
    'overthere_output_bytes_sent_total',
    'counter',
    'Bytes of task output sent to clients, by format.',
  );
  const streams = new Family(
    'overthere_open_streams',
    'gauge',
    'Open long-lived streams (output, attach).',
  );
  for (const state of ['exited', 'failed', 'lost']) ended.add({ state }, 0);
  created.add({}, 0);
  restarted.add({}, 0);
  streams.add({ kind: 'output' }, 0);
  streams.add({ kind: 'attach' }, 0);

  const onStart = (task: TaskInfo): void => {
    if (task.restarts === 0) created.add({}, 1);
    else restarted.add({}, 1);
  };
  const onEnd = (task: TaskInfo): void => ended.add({ state: task.state }, 1);
  supervisor.on('task-start', onStart);
  supervisor.on('task-end', onEnd);

  return {
    countRequest(method, route, status) {
      requests.add({ method, route, status: String(status) }, 1);
    },
    outputBytes(format) {
      const sample = outputBytes.sample({ format });
      return (bytes) => {
        sample.value += bytes;
      };
    },
    trackStream(kind, delta) {
      streams.add({ kind }, delta);
    },
    render() {
      const byState = new Map<string, number>();
      let live = 0;
      for (const task of supervisor.list()) {
        byState.set(task.state, (byState.get(task.state) ?? 0) + 1);
        if (!isFinalState(task.state)) live += 1;
      }
      const lines: string[] = [];
      created.render(lines);
      restarted.render(lines);
      ended.render(lines);
      const liveFamily = new Family('overthere_tasks_live', 'gauge', 'Tasks not in a final state.');
      liveFamily.add({}, live);
      liveFamily.render(lines);
      const tasks = new Family('overthere_tasks', 'gauge', 'Tasks the supervisor holds, by state.');
      for (const state of ['running', 'stopping', 'backoff', 'exited', 'failed', 'lost']) {
        tasks.add({ state }, byState.get(state) ?? 0);
      }
      tasks.render(lines);
      streams.render(lines);
      requests.render(lines);
      outputBytes.render(lines);
      return `${lines.join('\n')}\n`;
    },
    dispose() {
      supervisor.off('task-start', onStart);
      supervisor.off('task-end', onEnd);
    },
  };
}
