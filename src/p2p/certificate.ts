// tsyringe, under @peculiar/x509, needs the Reflect metadata polyfill loaded before it
import 'reflect-metadata';
import { createPrivateKey, webcrypto } from 'node:crypto';
import { X509CertificateGenerator } from '@peculiar/x509';

/** A TLS certificate and its private key, both PEM. */
export interface LinkCertificate {
  readonly cert: string;
  readonly key: string;
}

const ALGORITHM = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' };
const VALIDITY_MS = 10 * 365 * 24 * 3600 * 1000;

/**
 * A fresh self-signed P-256 certificate for one run of a member's link listener. Nobody checks
 * it against a CA: a link's identity is the member key's proof bound to the TLS channel, so the
 * certificate only has to let TLS run, and a new one each start leaks nothing between runs.
 */
export async function linkCertificate(): Promise<LinkCertificate> {
  const keys = await webcrypto.subtle.generateKey(ALGORITHM, true, ['sign', 'verify']);
  const now = Date.now();
  // signed with Node's global WebCrypto, the library's default provider
  const cert = await X509CertificateGenerator.createSelfSigned({
    serialNumber: '01',
    name: 'CN=pegout-member-link',
    notBefore: new Date(now),
    notAfter: new Date(now + VALIDITY_MS),
    keys,
    signingAlgorithm: ALGORITHM,
  });
  const pkcs8 = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', keys.privateKey));
  const key = createPrivateKey({ key: pkcs8, format: 'der', type: 'pkcs8' }).export({ format: 'pem', type: 'pkcs8' });
  return { cert: cert.toString('pem'), key: key.toString() };
}
