/**
 * The capacity board: a JetStream KV bucket where each agent keeps its advert
 * under `agent.<id>`, re-put every advert period. nats-server 2.9 has no
 * per-key TTL, so the bucket's max age is the TTL: an agent that stops
 * re-putting drops off the board after `ttlMs`. Clients claim room with a
 * compare-and-set on the entry's revision; `claim.<key>` entries give
 * first-come-wins ownership of a name (create only succeeds once).
 */
import { jetstreamManager } from '@nats-io/jetstream';
import { Kvm, type KV } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import { encodeJson, parseAdvert, type AgentAdvert } from './wire.js';
import { taskToken } from './subjects.js';

/** An advert as it sits on the board, with the revision to compare-and-set against. */
export interface BoardEntry {
  advert: AgentAdvert;
  revision: number;
}

/** The KV side of capacity adverts. */
export interface CapacityBoard {
  readonly bucket: string;
  /** Put an agent's advert (creating the bucket again if the server lost it). */
  put(advert: AgentAdvert): Promise<void>;
  /** Every advert on the board (expired ones are gone: the bucket's max age drops them). */
  list(): Promise<BoardEntry[]>;
  /** Replace an advert only if it is still at `revision`; false when someone got there first. */
  update(advert: AgentAdvert, revision: number): Promise<boolean>;
  /** Remove an agent's advert (it is going away). */
  remove(agentId: string): Promise<void>;
  /** Take `key` for good (until the bucket's TTL): true for exactly one caller. */
  claim(key: string, owner: string): Promise<boolean>;
}

/** The bucket name for a subject prefix: `overthere` → `overthere-capacity`. */
export function defaultBucketName(prefix: string): string {
  return `${prefix.replaceAll('.', '-')}-capacity`;
}

const advertKey = (agentId: string): string => `agent.${agentId}`;

function isWrongSequence(error: unknown): boolean {
  return error instanceof Error && /wrong last sequence|key exists/i.test(error.message);
}

/**
 * Open the board, creating the bucket (with `ttlMs` as its max age) when
 * `create` is set. Rejects when the server has no JetStream.
 */
export async function openCapacityBoard(
  connection: NatsConnection,
  options: { bucket: string; ttlMs: number; create: boolean },
): Promise<CapacityBoard> {
  const kvm = new Kvm(connection);
  const open = async (): Promise<KV> => {
    if (!options.create) return kvm.open(options.bucket);
    try {
      return await kvm.create(options.bucket, { ttl: options.ttlMs, history: 1 });
    } catch (error) {
      // Created by another agent with other settings: use it as it is.
      if (error instanceof Error && /already in use/i.test(error.message)) {
        return kvm.open(options.bucket);
      }
      throw error;
    }
  };
  let kv = await open();
  let manager: ReturnType<typeof jetstreamManager> | undefined;
  // open() of a missing bucket succeeds; the first call on it would fail. Ask now.
  await kv.status();

  return {
    bucket: options.bucket,
    async put(advert) {
      try {
        await kv.put(advertKey(advert.agent), encodeJson(advert));
      } catch (error) {
        if (!options.create) throw error;
        // A server restarted without its store has no bucket any more.
        kv = await open();
        await kv.put(advertKey(advert.agent), encodeJson(advert));
      }
    },
    async list() {
      // The keys from the stream's subject counts (one request), not from
      // kv.keys(): its consumer can wait forever when entries expire while it reads.
      manager ??= jetstreamManager(connection).catch((error: unknown) => {
        manager = undefined;
        throw error;
      });
      const jsm = await manager;
      const subjectPrefix = `$KV.${options.bucket}.`;
      const info = await jsm.streams.info(`KV_${options.bucket}`, {
        subjects_filter: `${subjectPrefix}agent.*`,
      });
      const keys = Object.keys(info.state.subjects ?? {}).map((subject) =>
        subject.slice(subjectPrefix.length),
      );
      const entries: BoardEntry[] = [];
      for (const key of keys) {
        const entry = await kv.get(key);
        if (entry === null || entry.operation !== 'PUT') continue;
        const advert = parseAdvert(entry.value);
        if (advert !== undefined) entries.push({ advert, revision: entry.revision });
      }
      return entries;
    },
    async update(advert, revision) {
      try {
        await kv.update(advertKey(advert.agent), encodeJson(advert), revision);
        return true;
      } catch (error) {
        if (isWrongSequence(error)) return false;
        throw error;
      }
    },
    async remove(agentId) {
      await kv.delete(advertKey(agentId));
    },
    async claim(key, owner) {
      try {
        await kv.create(`claim.${taskToken(key)}`, encodeJson({ owner, time: Date.now() }));
        return true;
      } catch (error) {
        if (isWrongSequence(error)) return false;
        throw error;
      }
    },
  };
}
