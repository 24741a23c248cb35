/**
 * A supervisor task as an rtot job on the wire. Field names, order, omission
 * rules and the `exit` strings follow the original Go server: empty `out`,
 * `err`, `exit` are left out, times are Go's `time.Time.String()` (the zero
 * time for what has not happened), `exit` is Go's `*exec.ExitError` text.
 */
import type { ExitStatus, TaskInfo, TaskState } from '@overthere/core';
import { formatGoTime, goExitText } from './go-format.js';

/** The three states rtot clients know. */
export type JobState = 'new' | 'running' | 'complete';

/** Fields `?fields=` selects; `id`, `state`, `href` (and `exit`) are always there. */
export const SELECTABLE_FIELDS = ['out', 'err', 'create', 'start', 'complete', 'filename'] as const;
export type SelectableField = (typeof SELECTABLE_FIELDS)[number];

const ALL_FIELDS: ReadonlySet<string> = new Set(SELECTABLE_FIELDS);

/** The `exit` of a job whose run was interrupted by a server crash or kill: its real end is unknown. */
export const LOST_EXIT_TEXT = 'lost: rtot-server stopped while the job was running';

/** A job as sent: keys in the original's order. */
export interface JobJson {
  id: number;
  out?: string;
  err?: string;
  state: JobState;
  exit?: string;
  start?: string;
  complete?: string;
  create?: string;
  filename?: string;
  href: string;
}

/** What a job is rendered from: a supervisor snapshot, or a job still being started. */
export interface JobSource {
  id: number;
  state: JobState;
  createdAt?: string;
  startedAt?: string;
  endedAt?: string;
  exit?: string;
  filename: string;
  /** The job's output so far, per stream (read only when the field is wanted). */
  output?: (stream: 'stdout' | 'stderr') => Promise<Buffer>;
}

/**
 * The fields a request selects: `?fields=a,b` (the first `fields` parameter, as
 * Go's `Query()["fields"][0]`), else every selectable field.
 */
export function selectedFields(fields: unknown): ReadonlySet<string> {
  const first: unknown = Array.isArray(fields) ? fields[0] : fields;
  if (typeof first !== 'string') return ALL_FIELDS;
  return new Set(first.split(','));
}

/** rtot's state for a supervisor state: anything not final is `running`. */
export function jobStateOf(state: TaskState): JobState {
  return state === 'exited' || state === 'failed' || state === 'lost' ? 'complete' : 'running';
}

/** `exit` for a finished run: absent for a clean exit, else Go's error text. */
export function exitTextOf(
  exit: ExitStatus | undefined,
  error?: { message: string },
): string | undefined {
  if (exit?.reason === 'lost') return LOST_EXIT_TEXT;
  if (exit !== undefined) {
    const text = goExitText(exit.code, exit.signal);
    if (text !== undefined) return text;
  }
  return error?.message;
}

/** The source of a job from a supervisor snapshot. */
export function sourceOf(task: TaskInfo, filename: string, output: JobSource['output']): JobSource {
  const state = jobStateOf(task.state);
  const source: JobSource = { id: Number(task.id), state, filename, createdAt: task.createdAt };
  if (task.startedAt !== undefined) source.startedAt = task.startedAt;
  if (state === 'complete') {
    if (task.endedAt !== undefined) source.endedAt = task.endedAt;
    const exit = exitTextOf(task.exit, task.error);
    if (exit !== undefined) source.exit = exit;
  }
  if (output !== undefined) source.output = output;
  return source;
}

async function outputText(
  source: JobSource,
  stream: 'stdout' | 'stderr',
): Promise<string | undefined> {
  if (!source.output) return undefined;
  try {
    const data = await source.output(stream);
    return data.length === 0 ? undefined : data.toString('utf8');
  } catch {
    // The job was removed while we read it: it has no output left to show.
    return undefined;
  }
}

/** Render a job with the selected fields. */
export async function renderJob(source: JobSource, fields: ReadonlySet<string>): Promise<JobJson> {
  const [out, err] = await Promise.all([
    fields.has('out') ? outputText(source, 'stdout') : undefined,
    fields.has('err') ? outputText(source, 'stderr') : undefined,
  ]);
  // Built key by key: JSON keeps insertion order, and this is the original's order.
  const job = { id: source.id } as JobJson;
  if (out !== undefined) job.out = out;
  if (err !== undefined) job.err = err;
  job.state = source.state;
  if (source.exit !== undefined) job.exit = source.exit;
  if (fields.has('start')) job.start = formatGoTime(source.startedAt);
  if (fields.has('complete')) job.complete = formatGoTime(source.endedAt);
  if (fields.has('create')) job.create = formatGoTime(source.createdAt);
  if (fields.has('filename')) job.filename = source.filename;
  job.href = `/jobs/${source.id}`;
  return job;
}
