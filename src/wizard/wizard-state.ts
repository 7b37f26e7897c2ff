import type { ProbeResult } from "../catalog/run-probe";
import type { ChecklistItem } from "./compliance";
import type { planView, ReconcileIds } from "./reconcile";
import type { Channel, MonitoringStep, Rule, SecurityStep, ServicesStep, Step } from "./steps";

export interface ServiceKeysEntry {
  /** Masked values only; the sealed blobs live under their own storage keys. */
  fields: Record<string, string>;
  generated: string[];
  complete: boolean;
  warnings: string[];
}

export interface IssuedKeySummary {
  key_id: string;
  start: string;
  backup_key_id?: string;
}

/** A channel as the state shows it: secret settings masked. */
export type MaskedChannel = Omit<Channel, "webhook_url" | "twilio_auth_token"> & Record<string, string>;

export interface CommitSummary {
  committed_at: string;
  /** What the commit created (channels and rules: the ones it added; see `reconciled` for the rest). */
  created: { keys: string[]; credentials: string[]; channels: string[]; rules: string[]; policy: boolean };
  /** Channel and rule ids by what the commit did to them (src/wizard/reconcile.ts). */
  reconciled?: { channels: ReconcileIds; rules: ReconcileIds };
  /** The difference the review step showed, as committed. */
  changes?: ReturnType<typeof planView>;
}

export interface WizardState {
  id: string;
  tenant_id: string;
  created_by: string;
  status: "open" | "committed";
  current_step: Step;
  furthest_step: Step;
  steps: {
    services: ServicesStep | null;
    security: SecurityStep | null;
    keys: { services: Record<string, ServiceKeysEntry>; issued_keys: Record<string, IssuedKeySummary> };
    testing: { results: Record<string, ProbeResult & { tested_at: string }> } | null;
    monitoring: { channels: MaskedChannel[]; rules: Rule[] } | null;
  };
  compliance_checklist: ChecklistItem[];
  commit: CommitSummary | null;
  created_at: string;
  updated_at: string;
  expires_at: string;
}

export type WizardMutation =
  | { type: "services"; data: ServicesStep }
  | { type: "security"; data: SecurityStep }
  | { type: "confirm"; step: "keys" | "testing" }
  | { type: "monitoring"; data: MonitoringStep; masked: MaskedChannel[]; sealed: Record<string, string> }
  | { type: "navigate"; step: Step }
  | {
      type: "serviceFields";
      serviceId: string;
      entry: ServiceKeysEntry;
      sealed: Record<string, string>;
      /** Fields of this service whose earlier values stay (generated ones); every other earlier value goes. */
      keep: string[];
    }
  | {
      type: "issuedKeys";
      /** The security settings the keys were minted under: refused if the wizard's have changed since. */
      security: SecurityStep;
      issued: Record<string, IssuedKeySummary>;
      /** The key rows (hashes and display parts only) by service. */
      rows: Record<string, unknown[]>;
    }
  | { type: "channelSecret"; slot: string; blob: string }
  | { type: "testResults"; results: Record<string, ProbeResult> };
