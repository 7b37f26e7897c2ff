import { describe, expect, it } from "vitest";
import { assertDeliverableUrl } from "../../src/monitoring/outbound-url";

/** Every literal spelling an attacker can give a webhook URL to reach this machine, a private network or metadata. */
const REFUSED = [
  // loopback, in every IPv4 spelling the URL parser accepts
  "https://127.0.0.1/hook",
  "https://127.1/hook",
  "https://2130706433/hook",
  "https://0x7f000001/hook",
  "https://0x7f.0.0.1/hook",
  "https://0177.0.0.1/hook",
  "https://017700000001/hook",
  "https://127.0.0.1./hook",
  "https://[::1]/hook",
  "https://[0:0:0:0:0:0:0:1]/hook",
  "https://[::ffff:127.0.0.1]/hook",
  "https://[::ffff:7f00:1]/hook",
  "https://[::127.0.0.1]/hook",
  "https://[64:ff9b::127.0.0.1]/hook",
  "https://[2002:7f00:1::]/hook",
  "https://localhost/hook",
  "https://localhost./hook",
  "https://api.localhost/hook",
  // unspecified
  "https://0.0.0.0/hook",
  "https://0/hook",
  "https://[::]/hook",
  // private networks
  "https://10.0.0.1/hook",
  "https://172.16.5.4/hook",
  "https://192.168.1.1/hook",
  "https://3232235777/hook",
  "https://100.64.0.1/hook",
  "https://[fd00::1]/hook",
  "https://[::ffff:10.0.0.1]/hook",
  // link-local and cloud metadata
  "https://169.254.169.254/latest/meta-data/",
  "https://2852039166/latest/meta-data/",
  "https://0xa9fea9fe/latest/meta-data/",
  "https://[::ffff:169.254.169.254]/latest/meta-data/",
  "https://[::ffff:a9fe:a9fe]/latest/meta-data/",
  "https://[fd00:ec2::254]/latest/meta-data/",
  "https://100.100.100.200/latest/meta-data/",
  "https://metadata.google.internal/computeMetadata/v1/",
  "https://[fe80::1]/hook",
  // multicast, reserved, documentation
  "https://224.0.0.1/hook",
  "https://255.255.255.255/hook",
  "https://[ff02::1]/hook",
  "https://192.0.2.10/hook",
  // internal names
  "https://intranet/hook",
  "https://printer.local/hook",
  "https://router.home.arpa/hook",
];

describe("outbound webhook URLs (threat model case 31)", () => {
  it.each(REFUSED)("refuses %s", (url) => {
    expect(() => assertDeliverableUrl(url, false)).toThrow();
  });

  it.each([
    "http://hooks.example.com/x",
    "ftp://hooks.example.com/x",
    "https://hooks.example.com:80/x",
    "https://hooks.example.com:8080/x",
    "https://hooks.example.com:22/x",
    "https://user:pass@hooks.example.com/x",
  ])("refuses a scheme, port or userinfo other than https on 443 or 8443: %s", (url) => {
    expect(() => assertDeliverableUrl(url, false)).toThrow();
  });

  it.each([
    "https://hooks.example.com/x",
    "https://hooks.example.com:443/x",
    "https://hooks.example.com:8443/x",
    "https://93.184.215.14/x",
    "https://[2606:2800:21f:cb07:6820:80da:af6b:8b2c]/x",
    "https://[::ffff:93.184.215.14]/x",
  ])("accepts a public https destination: %s", (url) => {
    expect(assertDeliverableUrl(url, false).protocol).toBe("https:");
  });

  it("admits plain-http loopback only with the local switch on, and nothing else private with it", () => {
    expect(() => assertDeliverableUrl("http://127.0.0.1:8080/hook", false)).toThrow();
    expect(assertDeliverableUrl("http://127.0.0.1:8080/hook", true).port).toBe("8080");
    expect(() => assertDeliverableUrl("http://10.0.0.1/hook", true)).toThrow();
    expect(() => assertDeliverableUrl("https://169.254.169.254/hook", true)).toThrow();
  });

  it("names only the field and the reason, never the URL", () => {
    try {
      assertDeliverableUrl("https://secret-token@169.254.169.254/hook", false, "channels.0.url");
      expect.unreachable();
    } catch (error) {
      expect(JSON.stringify(error)).not.toContain("secret-token");
      expect((error as Error).message).not.toContain("169.254");
    }
  });
});
