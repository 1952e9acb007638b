//! sprig's encodings, hashes, bcrypt, random strings and UUIDs.

use base64::Engine as _;
use sha2::Digest as _;

use super::super::value::Value;
use super::{Param::*, Table, bytes, fail, int};

/// Most random characters or bytes one call may make.
const MAX_RANDOM: i64 = 1 << 16;

pub(super) fn register(t: &mut Table) {
    t.add("b64enc", &[Str], |_, a| {
        Ok(Value::str(
            base64::engine::general_purpose::STANDARD.encode(bytes(&a[0])),
        ))
    });
    t.add("b64dec", &[Str], |_, a| {
        // sprig gives the decoder's error text as the result; it names a position only.
        Ok(Value::str(match go_b64_decode(bytes(&a[0])) {
            Ok(b) => b,
            Err(pos) => format!("illegal base64 data at input byte {pos}").into_bytes(),
        }))
    });
    t.add("b32enc", &[Str], |_, a| Ok(Value::str(base32_encode(bytes(&a[0])))));
    t.add("b32dec", &[Str], |_, a| {
        Ok(Value::str(match base32_decode(bytes(&a[0])) {
            Ok(b) => b,
            Err(pos) => format!("illegal base32 data at input byte {pos}").into_bytes(),
        }))
    });
    t.add("sha1sum", &[Str], |_, a| {
        Ok(Value::str(hex_lower(&sha1::Sha1::digest(bytes(&a[0])))))
    });
    t.add("sha256sum", &[Str], |_, a| {
        Ok(Value::str(hex_lower(&sha2::Sha256::digest(bytes(&a[0])))))
    });
    t.add("sha512sum", &[Str], |_, a| {
        Ok(Value::str(hex_lower(&sha2::Sha512::digest(bytes(&a[0])))))
    });
    t.add("adler32sum", &[Str], |_, a| {
        Ok(Value::str(adler32(bytes(&a[0])).to_string()))
    });
    t.add("bcrypt", &[Str], |_, a| Ok(Value::str(bcrypt_hash(bytes(&a[0]))?)));
    t.add("htpasswd", &[Str, Str], |_, a| {
        let user = bytes(&a[0]);
        if user.contains(&b':') {
            // sprig puts the user name in the result; it is the template's output, not an error.
            let mut out = b"invalid username: ".to_vec();
            out.extend_from_slice(user);
            return Ok(Value::str(out));
        }
        let mut out = user.to_vec();
        out.push(b':');
        out.extend_from_slice(bcrypt_hash(bytes(&a[1]))?.as_bytes());
        Ok(Value::str(out))
    });
    t.add("randBytes", &[Int], |_, a| {
        let n = random_count(int(&a[0]))?;
        let buf: Vec<u8> = (0..n).map(|_| rand::random::<u8>()).collect();
        Ok(Value::str(base64::engine::general_purpose::STANDARD.encode(buf)))
    });
    t.add("randAlphaNum", &[Int], |_, a| random_from(int(&a[0]), ALNUM));
    t.add("randAlpha", &[Int], |_, a| random_from(int(&a[0]), ALPHA));
    t.add("randNumeric", &[Int], |_, a| random_from(int(&a[0]), b"0123456789"));
    t.add("randAscii", &[Int], |_, a| {
        let n = random_count(int(&a[0]))?;
        Ok(Value::str(
            (0..n).map(|_| rand::random_range(32u8..127)).collect::<Vec<u8>>(),
        ))
    });
    t.add("uuidv4", &[], |_, _| Ok(Value::str(uuid::Uuid::new_v4().to_string())));
}

const ALPHA: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
const ALNUM: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";

fn random_count(n: i64) -> Result<usize, String> {
    if !(0..=MAX_RANDOM).contains(&n) {
        return fail(format!("count must be between 0 and {MAX_RANDOM}"));
    }
    Ok(n as usize)
}

fn random_from(n: i64, set: &[u8]) -> Result<Value, String> {
    let n = random_count(n)?;
    Ok(Value::str(
        (0..n)
            .map(|_| set[rand::random_range(0..set.len())])
            .collect::<Vec<u8>>(),
    ))
}

/// bcrypt at Go's default cost (10), `$2a$` as Go writes it.
fn bcrypt_hash(password: &[u8]) -> Result<String, String> {
    if password.len() > 72 {
        // Go's bcrypt refuses longer passwords; sprig then puts the error in the output.
        return Ok("failed to encrypt string with bcrypt: bcrypt: password length exceeds 72 bytes".into());
    }
    bcrypt::hash_with_result(password, 10)
        .map(|h| h.format_for_version(bcrypt::Version::TwoA))
        .map_err(|_| "bcrypt failed".to_string())
}

/// Go's `base64.StdEncoding.DecodeString`: padding required, `\r` and `\n` skipped, loose
/// trailing bits accepted; the error is the offset Go reports (`CorruptInputError`).
fn go_b64_decode(src: &[u8]) -> Result<Vec<u8>, usize> {
    let val = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let skip_newlines = |mut si: usize| {
        while si < src.len() && (src[si] == b'\n' || src[si] == b'\r') {
            si += 1;
        }
        si
    };
    let mut out = Vec::with_capacity(src.len() / 4 * 3);
    let mut si = 0;
    while si < src.len() {
        let mut dbuf = [0u32; 4];
        let mut dlen = 4;
        let mut j = 0;
        let mut done = false;
        while j < 4 {
            if si == src.len() {
                if j == 0 {
                    return Ok(out);
                }
                return Err(si - j);
            }
            let c = src[si];
            si += 1;
            if let Some(v) = val(c) {
                dbuf[j] = v;
                j += 1;
                continue;
            }
            if c == b'\n' || c == b'\r' {
                continue;
            }
            if c != b'=' {
                return Err(si - 1);
            }
            match j {
                0 | 1 => return Err(si - 1),
                2 => {
                    si = skip_newlines(si);
                    if si == src.len() {
                        return Err(src.len());
                    }
                    if src[si] != b'=' {
                        return Err(si - 1);
                    }
                    si += 1;
                }
                _ => {}
            }
            si = skip_newlines(si);
            if si < src.len() {
                return Err(si);
            }
            dlen = j;
            done = true;
            break;
        }
        let v = (dbuf[0] << 18) | (dbuf[1] << 12) | (dbuf[2] << 6) | dbuf[3];
        let bytes = [(v >> 16) as u8, (v >> 8) as u8, v as u8];
        out.extend_from_slice(&bytes[..dlen - 1]);
        if done {
            break;
        }
        si = skip_newlines(si);
    }
    Ok(out)
}

const B32: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

fn base32_encode(input: &[u8]) -> String {
    let mut out = String::new();
    for chunk in input.chunks(5) {
        let mut buf = [0u8; 5];
        buf[..chunk.len()].copy_from_slice(chunk);
        let bits = u64::from_be_bytes([0, 0, 0, buf[0], buf[1], buf[2], buf[3], buf[4]]);
        let chars = match chunk.len() {
            1 => 2,
            2 => 4,
            3 => 5,
            4 => 7,
            _ => 8,
        };
        for k in 0..8 {
            if k < chars {
                out.push(B32[((bits >> (35 - 5 * k)) & 31) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn base32_decode(input: &[u8]) -> Result<Vec<u8>, usize> {
    let clean: Vec<(usize, u8)> = input
        .iter()
        .copied()
        .enumerate()
        .filter(|(_, c)| *c != b'\r' && *c != b'\n')
        .collect();
    if !clean.len().is_multiple_of(8) {
        return Err(input.len() - input.len() % 8);
    }
    let mut out = Vec::new();
    for (q, quantum) in clean.chunks(8).enumerate() {
        let mut bits = 0u64;
        let mut n = 0;
        for &(pos, c) in quantum {
            if c == b'=' {
                if q + 1 != clean.len() / 8 {
                    return Err(pos);
                }
                break;
            }
            let v = B32.iter().position(|b| *b == c).ok_or(pos)? as u64;
            bits = (bits << 5) | v;
            n += 1;
        }
        if !matches!(n, 2 | 4 | 5 | 7 | 8) {
            return Err(quantum[n.min(7)].0);
        }
        bits <<= 5 * (8 - n);
        let bytes = n * 5 / 8;
        let all = bits.to_be_bytes();
        out.extend_from_slice(&all[3..3 + bytes]);
    }
    Ok(out)
}

fn adler32(data: &[u8]) -> u32 {
    let (mut a, mut b) = (1u32, 0u32);
    for &x in data {
        a = (a + x as u32) % 65521;
        b = (b + a) % 65521;
    }
    (b << 16) | a
}

/// Upper-case hex digits, for `%XX` escapes.
const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";

/// Lower-case hex of `b`, written straight into a byte buffer of the final size.
fn hex_lower(b: &[u8]) -> Vec<u8> {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = Vec::with_capacity(b.len() * 2);
    for &c in b {
        out.push(HEX[usize::from(c >> 4)]);
        out.push(HEX[usize::from(c & 15)]);
    }
    out
}

/// Go's `url.QueryEscape`.
pub(super) fn query_escape(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    for &c in s {
        match c {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => out.push(c),
            b' ' => out.push(b'+'),
            c => out.extend_from_slice(&[b'%', HEX_UPPER[usize::from(c >> 4)], HEX_UPPER[usize::from(c & 15)]]),
        }
    }
    out
}
