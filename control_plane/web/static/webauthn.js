// WebAuthn between the JSON API and the browser: the API speaks base64url strings (the
// options py_webauthn writes, the credential JSON it reads); navigator.credentials speaks
// ArrayBuffers. Used by the passkeys page (account.js) and the sign-in page.
"use strict";

const webauthn = (() => {
  function toBytes(text) {
    const base64 = text.replace(/-/g, "+").replace(/_/g, "/");
    const padded = base64 + "=".repeat((4 - (base64.length % 4)) % 4);
    return Uint8Array.from(atob(padded), (char) => char.charCodeAt(0));
  }

  function toText(buffer) {
    if (buffer === null || buffer === undefined) return null;
    let binary = "";
    for (const byte of new Uint8Array(buffer)) binary += String.fromCharCode(byte);
    return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  const descriptors = (list) => (list || []).map((item) => ({ ...item, id: toBytes(item.id) }));

  // The options of POST /api/v1/account/passkeys/options, for navigator.credentials.create.
  function creationOptions(json) {
    return {
      ...json,
      challenge: toBytes(json.challenge),
      user: { ...json.user, id: toBytes(json.user.id) },
      excludeCredentials: descriptors(json.excludeCredentials),
    };
  }

  // The options of POST /api/v1/auth/passkey/options, for navigator.credentials.get.
  function requestOptions(json) {
    return { ...json, challenge: toBytes(json.challenge), allowCredentials: descriptors(json.allowCredentials) };
  }

  function common(credential) {
    return {
      id: credential.id,
      rawId: toText(credential.rawId),
      type: credential.type,
      authenticatorAttachment: credential.authenticatorAttachment || undefined,
      clientExtensionResults: credential.getClientExtensionResults(),
    };
  }

  // A new credential (registration) as the API reads it.
  function registrationJSON(credential) {
    const response = credential.response;
    return {
      ...common(credential),
      response: {
        clientDataJSON: toText(response.clientDataJSON),
        attestationObject: toText(response.attestationObject),
        transports: typeof response.getTransports === "function" ? response.getTransports() : [],
      },
    };
  }

  // An assertion (sign-in) as the API reads it.
  function assertionJSON(credential) {
    const response = credential.response;
    return {
      ...common(credential),
      response: {
        clientDataJSON: toText(response.clientDataJSON),
        authenticatorData: toText(response.authenticatorData),
        signature: toText(response.signature),
        userHandle: toText(response.userHandle),
      },
    };
  }

  // What to tell the person when the browser refuses or they cancel.
  function problem(error) {
    if (error?.name === "NotAllowedError") return "The passkey prompt was cancelled or timed out.";
    if (error?.name === "InvalidStateError") return "This device already holds a passkey for your account.";
    if (error?.name === "SecurityError") return "This browser refuses passkeys on this address (open the panel by its domain name).";
    return `The browser could not use a passkey: ${error?.message || error}`;
  }

  const supported = () => typeof window.PublicKeyCredential === "function" && !!navigator.credentials;

  return { creationOptions, requestOptions, registrationJSON, assertionJSON, problem, supported };
})();
