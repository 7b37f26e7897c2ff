// The audit log (helper H6 builds this out).
export const renderAudit = (page) => page("Audit log");
