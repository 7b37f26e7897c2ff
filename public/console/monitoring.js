// Channels and rules (helper H6 builds these out).
export const renderMonitoring = (page) => page("Channels and rules");
export const renderChannel = (page, id) => page(`Channel ${id}`);
