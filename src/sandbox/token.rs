//! Opaque paging tokens: standard base64 (with `+`, `/`, `=`) of a small JSON state.
//!
//! Real `NextToken`s look like this too, so a client that forgets to URL-encode them
//! breaks here as it would against Amazon. Written by hand to avoid a dependency for
//! forty lines.

use serde::Serialize;
use serde::de::DeserializeOwned;

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Encodes `state` as an opaque token.
pub(super) fn encode<T: Serialize>(state: &T) -> String {
    // Serializing plain structs of strings and numbers cannot fail.
    let json = serde_json::to_vec(state).unwrap_or_default();
    base64_encode(&json)
}

/// Decodes a token made by [`encode`]; `None` for anything garbled.
pub(super) fn decode<T: DeserializeOwned>(token: &str) -> Option<T> {
    let bytes = base64_decode(token)?;
    serde_json::from_slice(&bytes).ok()
}

fn base64_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let text = text.as_bytes();
    if text.is_empty() || !text.len().is_multiple_of(4) {
        return None;
    }
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    let last = text.len() / 4 - 1;
    for (index, quad) in text.chunks(4).enumerate() {
        let padding = quad.iter().rev().take_while(|&&c| c == b'=').count();
        if padding > 2 || (padding > 0 && index != last) {
            return None;
        }
        let mut n: u32 = 0;
        for &c in &quad[..4 - padding] {
            let value = ALPHABET.iter().position(|&a| a == c)?;
            n = (n << 6) | value as u32;
        }
        n <<= 6 * padding as u32;
        let decoded = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&decoded[..3 - padding]);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trips_every_length() {
        for len in 0..40u8 {
            let data: Vec<u8> = (0..len)
                .map(|i| i.wrapping_mul(37).wrapping_add(250))
                .collect();
            let text = base64_encode(&data);
            if len > 0 {
                assert_eq!(base64_decode(&text), Some(data), "{text}");
            }
        }
        assert_eq!(base64_encode(b"Man"), "TWFu");
        assert_eq!(base64_encode(b"Ma"), "TWE=");
        assert_eq!(base64_encode(b"M"), "TQ==");
    }

    #[test]
    fn garbled_tokens_are_refused() {
        assert_eq!(base64_decode("TWE"), None);
        assert_eq!(base64_decode("T=E="), None);
        assert_eq!(base64_decode("TW E"), None);
        assert_eq!(decode::<serde_json::Value>("bm90IGpzb24="), None);
    }
}
