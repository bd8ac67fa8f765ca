//! gzip content coding (RFC 9110 §12.5.3): used when the request's `Accept-Encoding` accepts
//! `gzip` with a non-zero quality, directly or through `*`. Prometheus always asks for it.

use std::convert::Infallible;
use std::io::Write;
use std::pin::Pin;
use std::task::{Context, Poll};

use flate2::write::GzEncoder;
use flate2::Compression;
use hyper::body::{Bytes, Frame};

use super::Body;

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

/// Compresses a body as it streams: each chunk is compressed when the inner body yields it, so
/// a large `/metrics` response is never held whole, plain or compressed.
pub struct GzipBody {
    inner: Body,
    encoder: Option<GzEncoder<Vec<u8>>>,
}

impl GzipBody {
    pub fn new(inner: Body) -> Self {
        Self {
            inner,
            encoder: Some(GzEncoder::new(Vec::new(), Compression::fast())),
        }
    }
}

impl hyper::body::Body for GzipBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        loop {
            if self.encoder.is_none() {
                return Poll::Ready(None);
            }
            match Pin::new(&mut self.inner).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(frame))) => {
                    let Ok(data) = frame.into_data() else {
                        continue; // no trailers on these responses
                    };
                    let encoder = self.encoder.as_mut().expect("checked above");
                    // Writing into a Vec cannot fail.
                    let _ = encoder.write_all(&data);
                    let out = std::mem::take(encoder.get_mut());
                    if !out.is_empty() {
                        return Poll::Ready(Some(Ok(Frame::data(Bytes::from(out)))));
                    }
                }
                Poll::Ready(None) => {
                    let encoder = self.encoder.take().expect("checked above");
                    let out = encoder.finish().unwrap_or_default();
                    return Poll::Ready(
                        (!out.is_empty()).then(|| Ok(Frame::data(Bytes::from(out)))),
                    );
                }
                Poll::Ready(Some(Err(e))) => match e {},
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.encoder.is_none()
    }
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

    /// A body of ready chunks.
    struct Chunks(std::collections::VecDeque<Bytes>);

    impl hyper::body::Body for Chunks {
        type Data = Bytes;
        type Error = Infallible;
        fn poll_frame(
            mut self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
            Poll::Ready(self.0.pop_front().map(|b| Ok(Frame::data(b))))
        }
    }

    #[test]
    fn streams_chunk_by_chunk() {
        use http_body_util::BodyExt;
        use std::io::Read;
        let chunks = (0..50)
            .map(|i| Bytes::from(format!("walwatch_up{{db=\"{i}\"}} 1\n").repeat(2000)))
            .collect();
        let mut body = GzipBody::new(BodyExt::boxed(Chunks(chunks)));
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let mut gz = Vec::new();
        let mut frames = 0;
        while let Some(frame) = rt.block_on(body.frame()) {
            gz.extend_from_slice(&frame.unwrap().into_data().unwrap());
            frames += 1;
        }
        assert!(frames > 1, "compressed as it streams, not at the end");
        let mut out = String::new();
        flate2::read::GzDecoder::new(&gz[..])
            .read_to_string(&mut out)
            .unwrap();
        assert_eq!(out.lines().count(), 100_000);
        assert!(out.starts_with("walwatch_up{db=\"0\"} 1\n") && out.ends_with("{db=\"49\"} 1\n"));
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
