/**
 * Reading a JWT's `exp` without verifying it: the client only needs to
 * know when to ask `getToken` for a new one. The server verifies tokens.
 */
/** The `exp` claim (Unix seconds) of a JWT, or undefined if it has none or is not a JWT. */
export declare function tokenExpiry(token: string): number | undefined;
