import { DurableObject } from "cloudflare:workers";

/** Per-wizard state machine. Built out by the wizard issue; declared now so the binding and migration exist. */
export class WizardSession extends DurableObject<Env> {}
