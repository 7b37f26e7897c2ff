import { describe, expect, it } from "vitest";
import { evaluateControls } from "../../src/compliance/controls";
import { plannedFacts } from "../../src/compliance/facts";
import { complianceChecklist } from "../../src/wizard/compliance";
import type { SecurityStep } from "../../src/wizard/steps";
import { createTenant } from "../helpers/api";
import { wizardCall } from "../wizard/helpers";

const SECURITY: SecurityStep = {
  security_level: "enhanced",
  environment: "production",
  rotation_policy: "90_days",
  ip_allowlist: [],
  country_allowlist: [],
  require_2fa: true,
  compliance: ["soc2", "pci_dss"],
};

describe("the wizard's checklist is the report's controls on the planned settings", () => {
  it("does not claim rotation or monitoring the settings do not make happen", () => {
    const items = complianceChecklist(SECURITY, 0, 2);
    const soc2 = Object.fromEntries(items.filter((i) => i.standard === "soc2").map((i) => [i.id, i]));
    // Keys rotate on the cron, but the wizard schedules no rotation for provider credentials.
    expect(soc2["CC6.1-rotation"]).toMatchObject({ status: "partial", met: false });
    expect(soc2["CC6.1-rotation"]?.why).toContain("2 provider credentials will not rotate");
    // No channel: alerts are listed, nobody is told.
    expect(soc2["CC7.2"]).toMatchObject({ status: "not_met" });
    expect(soc2["CC6.1-mfa"]).toMatchObject({ status: "met" });
    expect(complianceChecklist(SECURITY, 1, 0).find((i) => i.id === "CC7.2")?.status).toBe("met");
    expect(complianceChecklist(SECURITY, 1, 0).find((i) => i.id === "CC6.1-rotation")?.status).toBe("met");
  });

  it("gives each item exactly the status and evidence of the control the report computes", () => {
    const facts = plannedFacts({ ...SECURITY, rotation_policy: "none", security_level: "basic" }, 1, 1);
    const items = complianceChecklist(
      { ...SECURITY, rotation_policy: "none", security_level: "basic" },
      1,
      1,
    );
    for (const standard of ["soc2", "pci_dss"] as const) {
      expect(
        items
          .filter((i) => i.standard === standard)
          .map(({ id, status, evidence }) => ({ id, status, evidence })),
      ).toEqual(
        evaluateControls(standard, facts).map(({ id, status, evidence }) => ({ id, status, evidence })),
      );
    }
    expect(items.find((i) => i.id === "3.7.4")?.status).toBe("not_met");
    expect(items.find((i) => i.id === "10.5.1")?.status).toBe("not_met");
  });

  it("is part of the wizard state once the security step is saved", async () => {
    const tenant = await createTenant("checklist in state");
    const { body: started } = await wizardCall(tenant, "POST", "/");
    await wizardCall(tenant, "PUT", `/${started.id}/steps/services`, { service_ids: ["stripe"] });
    const saved = await wizardCall(tenant, "PUT", `/${started.id}/steps/security`, {
      ...SECURITY,
      ip_allowlist: ["100.64.0.0/10"],
    });
    expect(saved.status).toBe(200);
    expect(Object.fromEntries(saved.body.compliance_checklist.map((i) => [i.id, i.status]))).toMatchObject({
      "CC6.6": "met",
      "CC7.2": "not_met",
      "CC6.1-rotation": "partial",
    });
  });
});
