//! walwatch sidecar (stub until the exporter lands).
fn main() {
    println!("walwatch {}", env!("CARGO_PKG_VERSION"));
}
