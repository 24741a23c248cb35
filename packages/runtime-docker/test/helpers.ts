/** Shared pieces of the Docker runtime's integration tests. */
import Docker from 'dockerode';

/** The image `scripts/services.sh up` builds: busybox sh and utilities, no bash. */
export const TEST_IMAGE = process.env.OVERTHERE_TEST_IMAGE ?? 'overthere-test:busybox';

/** A client for looking at containers behind the runtime's back. */
export const docker = new Docker({ socketPath: '/var/run/docker.sock' });
