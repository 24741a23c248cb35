/** The labels that mark a container as ours, and who within overthere owns it. */

/** Present on every container the runtime creates. */
export const MANAGED_BY_LABEL = 'org.overthere.managed-by';
export const MANAGED_BY_VALUE = 'overthere';
/** The agent that created it: only that agent ever touches it. */
export const AGENT_LABEL = 'org.overthere.agent';
/** The OS user the agent runs as: agents of other users never touch it. */
export const USER_LABEL = 'org.overthere.user';
/** The task (or sandbox) id it was created for. */
export const TASK_LABEL = 'org.overthere.task';
/** `task`, `sandbox` or `probe`. */
export const KIND_LABEL = 'org.overthere.kind';
/** Set when a loop-mounted quota filesystem belongs to the container (its name). */
export const QUOTA_LABEL = 'org.overthere.disk-quota';
/** The disk quota in bytes (so an adopting agent can account for it). */
export const DISK_BYTES_LABEL = 'org.overthere.disk-bytes';
/** Prefix for the spec's own labels. */
export const SPEC_LABEL_PREFIX = 'org.overthere.label.';

/** What kind of container it is. */
export type ContainerKind = 'task' | 'sandbox' | 'probe';

/** The uid the agent runs as, as a label value. */
export function currentUser(): string {
  return String(process.getuid?.() ?? 'unknown');
}

/** Labels for a new container. */
export function ownerLabels(
  agentId: string,
  kind: ContainerKind,
  taskId: string,
  specLabels: Record<string, string> | undefined,
): Record<string, string> {
  const labels: Record<string, string> = {};
  for (const [key, value] of Object.entries(specLabels ?? {})) {
    labels[`${SPEC_LABEL_PREFIX}${key}`] = value;
  }
  labels[MANAGED_BY_LABEL] = MANAGED_BY_VALUE;
  labels[AGENT_LABEL] = agentId;
  labels[USER_LABEL] = currentUser();
  labels[TASK_LABEL] = taskId;
  labels[KIND_LABEL] = kind;
  return labels;
}

/** Engine API list filter for this agent's containers. */
export function ownerFilter(agentId: string): { label: string[] } {
  return {
    label: [
      `${MANAGED_BY_LABEL}=${MANAGED_BY_VALUE}`,
      `${AGENT_LABEL}=${agentId}`,
      `${USER_LABEL}=${currentUser()}`,
    ],
  };
}

/** True when `labels` say the container belongs to this agent and user. */
export function isOwnedBy(labels: Record<string, string> | undefined, agentId: string): boolean {
  return (
    labels?.[MANAGED_BY_LABEL] === MANAGED_BY_VALUE &&
    labels[AGENT_LABEL] === agentId &&
    labels[USER_LABEL] === currentUser()
  );
}
