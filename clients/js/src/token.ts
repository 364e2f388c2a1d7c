/**
 * Reading a JWT's `exp` without verifying it: the client only needs to
 * know when to ask `getToken` for a new one. The server verifies tokens.
 */

/** The `exp` claim (Unix seconds) of a JWT, or undefined if it has none or is not a JWT. */
export function tokenExpiry(token: string): number | undefined {
  const part = token.split(".")[1];
  if (!part) return undefined;
  try {
    const base64 = part.replace(/-/g, "+").replace(/_/g, "/");
    const padded = base64 + "=".repeat((4 - (base64.length % 4)) % 4);
    const claims: unknown = JSON.parse(atob(padded));
    if (claims && typeof claims === "object" && "exp" in claims) {
      const exp = (claims as { exp: unknown }).exp;
      return typeof exp === "number" && Number.isFinite(exp) ? exp : undefined;
    }
  } catch {
    // Not a JWT we can read: no scheduled refresh.
  }
  return undefined;
}
