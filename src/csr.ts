// PKCS#10 certificate signing requests (RFC 2986) for an ECDSA P-256 key, DER-encoded by hand:
// node:crypto signs and verifies but has no CSR builder. Only what the kubelet-serving signer reads:
// a subject of O and CN, and DNS/IP subjectAltNames in an extensionRequest attribute.
import { createPublicKey, sign, type KeyObject } from 'node:crypto';
import { isIP } from 'node:net';

export interface CertificateRequestSpec {
  commonName: string;
  organization?: string;
  dnsNames?: string[];
  ipAddresses?: string[];
}

// ---- DER (X.690) -----------------------------------------------------------------------------------

function length(n: number): Buffer {
  if (n < 0x80) return Buffer.from([n]);
  const bytes: number[] = [];
  for (let v = n; v > 0; v = Math.floor(v / 256)) bytes.unshift(v & 0xff);
  return Buffer.from([0x80 | bytes.length, ...bytes]);
}

/** One TLV: tag, definite length, contents. */
function tlv(tag: number, ...contents: Buffer[]): Buffer {
  const body = Buffer.concat(contents);
  return Buffer.concat([Buffer.from([tag]), length(body.length), body]);
}

const sequence = (...items: Buffer[]) => tlv(0x30, ...items);
const set = (...items: Buffer[]) => tlv(0x31, ...items);
const utf8String = (s: string) => tlv(0x0c, Buffer.from(s, 'utf8'));
const octetString = (b: Buffer) => tlv(0x04, b);
/** A BIT STRING of whole bytes (no unused bits). */
const bitString = (b: Buffer) => tlv(0x03, Buffer.from([0]), b);

function oid(dotted: string): Buffer {
  const arcs = dotted.split('.').map(Number);
  const out: number[] = [40 * arcs[0]! + arcs[1]!];
  for (const arc of arcs.slice(2)) {
    const base128: number[] = [arc & 0x7f];
    for (let v = Math.floor(arc / 128); v > 0; v = Math.floor(v / 128)) base128.unshift(0x80 | (v & 0x7f));
    out.push(...base128);
  }
  return tlv(0x06, Buffer.from(out));
}

const OID = {
  commonName: '2.5.4.3',
  organization: '2.5.4.10',
  extensionRequest: '1.2.840.113549.1.9.14',
  subjectAltName: '2.5.29.17',
  ecdsaWithSHA256: '1.2.840.10045.4.3.2',
};

/** An IPv4 (4 bytes) or IPv6 (16 bytes) address as the iPAddress GeneralName carries it. */
export function ipBytes(address: string): Buffer {
  const family = isIP(address);
  if (family === 4) return Buffer.from(address.split('.').map(Number));
  if (family !== 6) throw new Error(`"${address}" is not an IP address`);
  let text = address.split('%')[0]!;
  const groups: number[] = [];
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (v4) {
    const b = ipBytes(v4[1]!);
    text = `${text.slice(0, -v4[1]!.length)}${((b[0]! << 8) | b[1]!).toString(16)}:${((b[2]! << 8) | b[3]!).toString(16)}`;
  }
  const [head, tail] = text.split('::') as [string, string | undefined];
  const parse = (part: string) => (part === '' ? [] : part.split(':').map((g) => parseInt(g, 16)));
  const left = parse(head);
  const right = tail === undefined ? [] : parse(tail);
  groups.push(...left, ...new Array<number>(8 - left.length - right.length).fill(0), ...right);
  const out = Buffer.alloc(16);
  groups.forEach((g, i) => out.writeUInt16BE(g, 2 * i));
  return out;
}

// ---- PKCS#10 ---------------------------------------------------------------------------------------

function subjectName(spec: CertificateRequestSpec): Buffer {
  const rdn = (type: string, value: string) => set(sequence(oid(type), utf8String(value)));
  return sequence(...(spec.organization ? [rdn(OID.organization, spec.organization)] : []), rdn(OID.commonName, spec.commonName));
}

function subjectAltNames(spec: CertificateRequestSpec): Buffer {
  const names = [
    ...(spec.dnsNames ?? []).map((d) => tlv(0x82, Buffer.from(d, 'ascii'))), // [2] dNSName, IA5String
    ...(spec.ipAddresses ?? []).map((ip) => tlv(0x87, ipBytes(ip))), // [7] iPAddress
  ];
  return sequence(oid(OID.subjectAltName), octetString(sequence(...names)));
}

/** A PEM "CERTIFICATE REQUEST" for `spec`, signed with the ECDSA P-256 `privateKey`. */
export function createCertificateRequest(spec: CertificateRequestSpec, privateKey: KeyObject): string {
  if (privateKey.asymmetricKeyType !== 'ec' || privateKey.asymmetricKeyDetails?.namedCurve !== 'prime256v1') {
    throw new Error('certificate requests are made for ECDSA P-256 keys only');
  }
  const spki = createPublicKey(privateKey).export({ type: 'spki', format: 'der' });
  const attributes = [];
  if ((spec.dnsNames?.length ?? 0) + (spec.ipAddresses?.length ?? 0) > 0) {
    attributes.push(sequence(oid(OID.extensionRequest), set(sequence(subjectAltNames(spec)))));
  }
  const info = sequence(tlv(0x02, Buffer.from([0])), subjectName(spec), spki, tlv(0xa0, ...attributes));
  // node:crypto's ECDSA signature is DER (r, s), as X.509 wants it.
  const signature = sign('sha256', info, privateKey);
  const der = sequence(info, sequence(oid(OID.ecdsaWithSHA256)), bitString(signature));
  const base64 = der.toString('base64').replace(/.{1,64}/g, '$&\n');
  return `-----BEGIN CERTIFICATE REQUEST-----\n${base64}-----END CERTIFICATE REQUEST-----\n`;
}
