import { z } from "@hono/zod-openapi";
import { ROTATION_STATES } from "./rotation-kinds";

/** The `rotation` object of a key or credential (DESIGN.md, "Fixed points for the operating life"). */
export const RotationSchema = z
  .object({
    policy_days: z
      .number()
      .int()
      .nullable()
      .describe("Days between scheduled rotations; null: by hand only."),
    next_rotation_at: z
      .string()
      .nullable()
      .describe("When the cron starts the next rotation; null while one runs or when none is scheduled."),
    state: z.enum(ROTATION_STATES),
    last_rotated_at: z.string().nullable(),
    last_error: z.string().nullable().describe("Why the latest rotation failed (state `failed`)."),
    in_progress: z
      .object({
        run_id: z.string(),
        step: z.string(),
        started_at: z.string(),
        overlap_ends_at: z.string().nullable(),
      })
      .optional()
      .describe("The running rotation and the step it is at."),
  })
  .openapi("Rotation");
