//! gzip content coding (RFC 9110 §12.5.3): used when the request's `Accept-Encoding` accepts
//! `gzip` with a non-zero quality, directly or through `*`. Prometheus always asks for it.

use std::io::Write;

use flate2::write::GzEncoder;
use flate2::Compression;

/// Whether an `Accept-Encoding` value accepts gzip.
pub fn accepted(accept_encoding: Option<&str>) -> bool {
    let Some(value) = accept_encoding else {
        return false;
    };
    let mut star = None;
    for item in value.split(',') {
        let mut parts = item.split(';');
        let coding = parts.next().unwrap_or("").trim();
        let mut q = 1.0_f64;
        for param in parts {
            if let Some((name, v)) = param.split_once('=') {
                if name.trim().eq_ignore_ascii_case("q") {
                    q = v.trim().parse().unwrap_or(0.0);
                }
            }
        }
        if coding.eq_ignore_ascii_case("gzip") || coding.eq_ignore_ascii_case("x-gzip") {
            return q > 0.0;
        }
        if coding == "*" {
            star = Some(q > 0.0);
        }
    }
    star.unwrap_or(false)
}

/// Compresses a whole body. Level 1: metrics text shrinks about tenfold at it already, and a
/// scrape should cost the sidecar as little CPU as possible.
pub fn compress(chunks: impl IntoIterator<Item = impl AsRef<[u8]>>) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::fast());
    for chunk in chunks {
        // Writing into a Vec cannot fail.
        let _ = encoder.write_all(chunk.as_ref());
    }
    encoder.finish().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn q_values_decide() {
        assert!(accepted(Some("gzip")));
        assert!(accepted(Some("deflate, GZIP;q=0.5")));
        assert!(accepted(Some("gzip, deflate, br")));
        assert!(!accepted(Some("gzip;q=0")));
        assert!(!accepted(Some("gzip; q=0.000")));
        assert!(!accepted(Some("identity")));
        assert!(!accepted(None));
        assert!(accepted(Some("*")));
        assert!(!accepted(Some("*, gzip;q=0")));
        assert!(!accepted(Some("*;q=0")));
    }

    #[test]
    fn round_trips() {
        use std::io::Read;
        let body = "walwatch_up 1\n".repeat(100);
        let gz = compress([&body[..700], &body[700..]]);
        assert!(gz.len() < body.len() / 5);
        let mut out = String::new();
        flate2::read::GzDecoder::new(&gz[..])
            .read_to_string(&mut out)
            .unwrap();
        assert_eq!(out, body);
    }
}
