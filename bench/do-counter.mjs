// A Durable Object namespace behind an observer (bench and test only; never deployed).
//
// `observeNamespace(namespace, { onCall })` returns a namespace that hands out the real stubs wrapped so that
// every call made on a stub (an RPC method such as `commit`, `consume`, or `fetch`) reports
// `onCall({ method })` when it is made. Ids (`idFromName`, `idFromString`, `newUniqueId`) pass through;
// `get` and `getByName` wrap the stub they return, `jurisdiction` the namespace. Property reads that are not
// calls (`stub.id`, `stub.name`) are not counted.

const PASS_THROUGH = new Set(["id", "name", "then", "constructor"]);

function observeStub(stub, onCall) {
  return new Proxy(stub, {
    get(target, property) {
      const value = Reflect.get(target, property);
      if (typeof property === "symbol" || PASS_THROUGH.has(property) || typeof value !== "function")
        return value;
      return (...args) => {
        onCall({ method: property });
        // Reflect.apply: an RPC method stub answers any property, `apply` included, as a remote method.
        return Reflect.apply(value, target, args);
      };
    },
  });
}

/** `namespace` with every stub it hands out observed: `onCall({ method })` for each call made on a stub. */
export function observeNamespace(namespace, { onCall }) {
  return new Proxy(namespace, {
    get(target, property) {
      const value = Reflect.get(target, property);
      if (typeof value !== "function") return value;
      if (property === "get" || property === "getByName")
        return (...args) => observeStub(Reflect.apply(value, target, args), onCall);
      if (property === "jurisdiction")
        return (...args) => observeNamespace(Reflect.apply(value, target, args), { onCall });
      return value.bind(target);
    },
  });
}
