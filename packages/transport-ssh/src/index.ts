/**
 * @overthere/transport-ssh — an SSH server (ssh2) in front of an overthere
 * Supervisor: `exec` runs a command as a task, `shell` opens a PTY, and any
 * task (started over HTTP, NATS or SSH) can be attached over SSH.
 */
export { createSshServer } from './ssh-server.js';
export type {
  SshConnectionInfo,
  SshDisconnectFilter,
  SshListenOptions,
  SshServer,
  SshServerOptions,
} from './ssh-server.js';
export type {
  SshAttachTarget,
  SshAuthContext,
  SshDisconnectAction,
  SshPty,
  SshSessionContext,
  SshSessionHooks,
  SshSpecTarget,
  SshTarget,
  SshUser,
} from './types.js';
export { HOST_KEY_FILE, loadOrCreateHostKey, sshFingerprint } from './host-key.js';
export type { SshHostKey } from './host-key.js';
export { parseAuthorizedKeys, publicKeyAuthorized, publicKeyFromBlob } from './authorized-keys.js';
export type { SshPublicKey } from './authorized-keys.js';
