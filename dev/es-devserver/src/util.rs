//! Small helpers: identifiers and base64.

use std::sync::atomic::{AtomicU64, Ordering};

const B64URL: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Base64url without padding.
pub fn base64url(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 4 / 3 + 3);
    for chunk in bytes.chunks(3) {
        let b0 = u32::from(chunk.first().copied().unwrap_or(0));
        let b1 = u32::from(chunk.get(1).copied().unwrap_or(0));
        let b2 = u32::from(chunk.get(2).copied().unwrap_or(0));
        let n = (b0 << 16) | (b1 << 8) | b2;
        let chars = chunk.len() + 1;
        for i in 0..chars {
            let idx = ((n >> (18 - 6 * i)) & 63) as usize;
            out.push(char::from(B64URL.get(idx).copied().unwrap_or(b'A')));
        }
    }
    out
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn entropy() -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    mix(t
        ^ (u64::from(std::process::id()) << 32)
        ^ COUNTER.fetch_add(1, Ordering::Relaxed).rotate_left(17))
}

/// A 20-character, time-ordered document id like the ones Elasticsearch generates.
pub fn auto_id() -> String {
    let ms = crate::names::now_millis() as u64;
    let seq = COUNTER.fetch_add(1, Ordering::Relaxed);
    let r = entropy();
    let mut b = [0u8; 15];
    for (i, slot) in b.iter_mut().take(6).enumerate() {
        *slot = (ms >> (40 - 8 * i)) as u8;
    }
    for (i, slot) in b.iter_mut().skip(6).take(3).enumerate() {
        *slot = (seq >> (16 - 8 * i)) as u8;
    }
    for (i, slot) in b.iter_mut().skip(9).enumerate() {
        *slot = (r >> (8 * i)) as u8;
    }
    base64url(&b)
}

/// A 22-character random identifier (index and cluster UUIDs).
pub fn random_uuid() -> String {
    let a = entropy();
    let b = entropy();
    let mut bytes = [0u8; 16];
    for (i, slot) in bytes.iter_mut().enumerate() {
        let src = if i < 8 { a } else { b };
        *slot = (src >> (8 * (i % 8))) as u8;
    }
    base64url(&bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids() {
        assert_eq!(auto_id().len(), 20);
        assert_eq!(random_uuid().len(), 22);
        assert_ne!(auto_id(), auto_id());
        assert_eq!(base64url(b"Man"), "TWFu");
        assert_eq!(base64url(b"Ma"), "TWE");
    }
}
