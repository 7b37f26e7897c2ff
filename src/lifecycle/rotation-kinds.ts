/** Stage labels of credential versions, as AWS Secrets Manager's AWSCURRENT, AWSPENDING and AWSPREVIOUS. */
export const VERSION_STAGES = ["current", "pending", "previous"] as const;
export type VersionStage = (typeof VERSION_STAGES)[number];

/** How a credential rotates (see credentialRotations in src/db/schema.ts). */
export const ROTATION_METHODS = ["assisted", "provider", "external"] as const;
export type RotationMethod = (typeof ROTATION_METHODS)[number];

export const ROTATION_RUN_STATES = ["in_progress", "completed", "failed"] as const;
export type RotationRunState = (typeof ROTATION_RUN_STATES)[number];

/** The `rotation.state` a key or credential shows: its latest run's state, idle when none is running. */
export const ROTATION_STATES = ["idle", "in_progress", "failed"] as const;
export type RotationState = (typeof ROTATION_STATES)[number];

/** How a rotated key reaches its tenant: a JWE pushed to its endpoint, or sealed for one-time pickup. */
export const HANDOFF_METHODS = ["webhook", "pickup"] as const;
export type HandoffMethod = (typeof HANDOFF_METHODS)[number];

/** What a rotation run rotates: an issued key, a credential, a tenant's DEK, or the KEK under every DEK. */
export const ROTATION_SUBJECTS = ["key", "credential", "data_key", "keyring"] as const;
export type RotationSubject = (typeof ROTATION_SUBJECTS)[number];
