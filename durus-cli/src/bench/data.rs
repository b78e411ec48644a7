#![allow(clippy::indexing_slicing)] // fixed-size arrays indexed by loop counters below 64

//! The deterministic inputs of the workloads (section 1 of the shared
//! benchmark definitions; `docs/PERFORMANCE.md` lists the workloads): the
//! 100-character strings S(i), splitmix64 and the index sample.

/// SHA-256 of `data` (FIPS 180-4), for the strings S(i).
pub fn sha256(data: &[u8]) -> [u8; 32] {
    const K: [u32; 64] = [
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4,
        0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe,
        0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f,
        0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7,
        0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc,
        0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
        0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116,
        0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
        0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
        0xc67178f2,
    ];
    let mut h: [u32; 8] = [
        0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab,
        0x5be0cd19,
    ];
    let mut msg = data.to_vec();
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&((data.len() as u64) * 8).to_be_bytes());
    for block in msg.chunks_exact(64) {
        let mut w = [0u32; 64];
        for (i, word) in block.chunks_exact(4).enumerate().take(16) {
            w[i] = u32::from_be_bytes([word[0], word[1], word[2], word[3]]);
        }
        for i in 16..64 {
            let s0 = w[i - 15].rotate_right(7) ^ w[i - 15].rotate_right(18) ^ (w[i - 15] >> 3);
            let s1 = w[i - 2].rotate_right(17) ^ w[i - 2].rotate_right(19) ^ (w[i - 2] >> 10);
            w[i] = w[i - 16]
                .wrapping_add(s0)
                .wrapping_add(w[i - 7])
                .wrapping_add(s1);
        }
        let [mut a, mut b, mut c, mut d, mut e, mut f, mut g, mut hh] = h;
        for i in 0..64 {
            let s1 = e.rotate_right(6) ^ e.rotate_right(11) ^ e.rotate_right(25);
            let ch = (e & f) ^ (!e & g);
            let t1 = hh
                .wrapping_add(s1)
                .wrapping_add(ch)
                .wrapping_add(K[i])
                .wrapping_add(w[i]);
            let s0 = a.rotate_right(2) ^ a.rotate_right(13) ^ a.rotate_right(22);
            let maj = (a & b) ^ (a & c) ^ (b & c);
            let t2 = s0.wrapping_add(maj);
            hh = g;
            g = f;
            f = e;
            e = d.wrapping_add(t1);
            d = c;
            c = b;
            b = a;
            a = t1.wrapping_add(t2);
        }
        for (slot, v) in h.iter_mut().zip([a, b, c, d, e, f, g, hh]) {
            *slot = slot.wrapping_add(v);
        }
    }
    let mut out = [0u8; 32];
    for (chunk, word) in out.chunks_exact_mut(4).zip(h) {
        chunk.copy_from_slice(&word.to_be_bytes());
    }
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// S(i): the first 100 characters of
/// `hex(SHA-256("durus-bench-<i>-a")) ++ hex(SHA-256("durus-bench-<i>-b"))`.
pub fn item_string(i: u64) -> String {
    let mut s = hex(&sha256(format!("durus-bench-{i}-a").as_bytes()));
    s.push_str(&hex(&sha256(format!("durus-bench-{i}-b").as_bytes())));
    s.truncate(100);
    s
}

pub use durus_core::internals::SplitMix64;

/// K distinct indices of `[0, n)`: a partial Fisher-Yates shuffle driven by
/// splitmix64(seed).
pub fn sample(n: u64, k: u64, seed: u64) -> Vec<u64> {
    let k = k.min(n);
    let mut a: Vec<u64> = (0..n).collect();
    let mut rng = SplitMix64::new(seed);
    for i in 0..k {
        let j = i + rng.next_u64() % (n - i);
        a.swap(i as usize, j as usize);
    }
    a.truncate(k as usize);
    a
}

/// The nearest-rank percentile `p` (0 < p <= 100) of ascending `sorted`.
pub fn percentile(sorted: &[u64], p: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p * sorted.len() as f64 / 100.0).ceil() as usize).clamp(1, sorted.len());
    sorted.get(rank - 1).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_match_the_test_vectors() {
        assert_eq!(item_string(0), "db90d19ad085ef016c10f1264b4cc6d57df7f2aba8075336b996b801b565ab4098eee32e22f9bf38d524d7b9b51a53ce6aaf");
        assert_eq!(item_string(1), "b22bf048b05c4fffa1372bf645540606e61926f764da421181686e9ca94a35f298c4427b7f99e8d28c5fbc72d20e5ca6c4e0");
        assert_eq!(item_string(299_999), "edbf75e501ffc0a19b15c47f832b650724972f96c6dcba1d546ca7c7e71214715a42129b1ea6eb05f315aa2b4bed5bb9180c");
    }

    #[test]
    fn sample_matches_the_test_vectors() {
        let s = sample(100_000, 50_000, 42);
        assert_eq!(
            &s[..10],
            &[75413, 99119, 87728, 13202, 6290, 27127, 74837, 82695, 75437, 30613]
        );
        assert_eq!(&s[s.len() - 3..], &[36090, 11136, 86631]);
        assert_eq!(s.iter().sum::<u64>(), 2_502_550_188);
    }

    #[test]
    fn nearest_rank() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 50.0), Some(50));
        assert_eq!(percentile(&v, 99.9), Some(100));
        assert_eq!(percentile(&[], 50.0), None);
    }
}
