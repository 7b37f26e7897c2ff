import type { SubjectType } from "./rotation-runs";

/** What a rotation Workflow instance is started with. Nothing secret: params are stored by the engine. */
export interface RotationParams {
  /** The rotation run (and Workflow instance) id. */
  runId: string;
  tenantId: string;
  subjectType: SubjectType;
  subjectId: string;
  /** The time the rotation counts from: the cron's scheduled time, or the request's. */
  now: number;
  /** Overrides the subject's own overlap (a manual rotation's `grace_seconds`). */
  overlapSeconds?: number;
}

/** The event the cron sends to a run whose overlap ended by its (possibly fast-forwarded) clock. */
export const OVERLAP_ENDED = "overlap-ended";
export interface OverlapEndedPayload {
  now: number;
}
