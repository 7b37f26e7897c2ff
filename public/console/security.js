// Security: policy, 2FA and compliance (helper H6 builds this out).
export const renderSecurity = (page) => page("Security");
