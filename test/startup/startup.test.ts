import { createServer } from "node:net";
import { describe, expect, it } from "vitest";
import { listenProblem, nodeVersionProblem, requiredNodeMajor } from "../../src/startup/index.js";

describe("nodeVersionProblem", () => {
  it.each([`${requiredNodeMajor}.0.0`, `${requiredNodeMajor}.21.0`, `${requiredNodeMajor + 1}.1.0`])(
    "%s is new enough",
    (version) => {
      expect(nodeVersionProblem(version)).toBeUndefined();
    },
  );

  it.each(["20.20.2", "22.19.0", "not-a-version"])("%s is refused in one line naming the fix", (version) => {
    expect(nodeVersionProblem(version)).toBe(
      `Node.js ${version} is too old: api-key-server needs Node.js ${requiredNodeMajor} or newer (run it with npm start, which uses the Node.js ${requiredNodeMajor} installed by npm ci, or use the container image)`,
    );
  });
});

describe("listenProblem", () => {
  it("explains a real EADDRNOTAVAIL (an address this machine does not have)", async () => {
    const server = createServer();
    // 192.0.2.1 is TEST-NET-1 (RFC 5737): never a local address.
    const err = await new Promise<unknown>((resolve) => {
      server.once("error", resolve);
      server.listen(0, "192.0.2.1");
    });
    expect(listenProblem(err, "192.0.2.1", 8000)).toBe(
      "cannot listen on 192.0.2.1:8000: no such local address (set API_KEY_SERVER_HOST to an address of this machine, or 0.0.0.0)",
    );
  });

  it.each([
    [
      "EADDRINUSE",
      "cannot listen on 0.0.0.0:8000: the port is already in use (is another server running? stop it, or set PORT to a free port)",
    ],
    [
      "EACCES",
      "cannot listen on 0.0.0.0:8000: permission denied (ports below 1024 need privileges; set PORT to 1024 or above)",
    ],
  ])("explains %s", (code, message) => {
    expect(listenProblem(Object.assign(new Error("listen failed"), { code }), "0.0.0.0", 8000)).toBe(message);
  });

  it.each([new Error("something else"), Object.assign(new Error("x"), { code: "EMFILE" }), null, "text"])(
    "leaves anything else to the caller: %s",
    (err) => {
      expect(listenProblem(err, "0.0.0.0", 8000)).toBeUndefined();
    },
  );
});
