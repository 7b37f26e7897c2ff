// Request/response over a forked child's IPC channel.
import { fork } from "node:child_process";

export function forkWorker(modulePath, options = {}) {
  const child = fork(modulePath, [], { serialization: "advanced", ...options });
  const pending = new Map();
  let nextId = 0;
  child.on("message", ({ id, result, error }) => {
    const entry = pending.get(id);
    if (!entry) return;
    pending.delete(id);
    if (error) entry.reject(new Error(`${modulePath}: ${error}`));
    else entry.resolve(result);
  });
  child.on("exit", (code, signal) => {
    for (const { reject } of pending.values()) reject(new Error(`${modulePath} exited (${code ?? signal})`));
    pending.clear();
  });
  return {
    child,
    call(message) {
      const id = ++nextId;
      if (!child.connected) return Promise.reject(new Error(`${modulePath} is not running`));
      return new Promise((resolve, reject) => {
        pending.set(id, { resolve, reject });
        child.send({ id, ...message });
      });
    },
  };
}
