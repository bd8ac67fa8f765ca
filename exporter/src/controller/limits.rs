//! WAL size limits: parsed from config (`64MiB`, `1.5GB`, `10%`) and resolved against the
//! memory really available to this process tree (cgroup v2 `memory.max - memory.current`, else
//! `MemAvailable`). Parsing is pure; reading `/sys` and `/proc` happens in [`available_memory`].

use std::path::Path;

/// A limit as configured: absolute, or a fraction of available memory.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Limit {
    Bytes(u64),
    /// Fraction (0 < f ≤ 1) of the memory available when the limit is evaluated.
    OfAvailableMemory(f64),
}

impl Limit {
    /// Parses `64MiB`, `512KiB`, `2GiB`, `100MB`, `12345` (bytes) or `10%`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let t = text.trim();
        if let Some(percent) = t.strip_suffix('%') {
            let p: f64 = percent
                .trim()
                .parse()
                .map_err(|_| format!("`{text}` is not a percentage"))?;
            if !(p > 0.0 && p <= 100.0) {
                return Err(format!(
                    "`{text}`: a percentage of available memory must be in (0, 100]"
                ));
            }
            return Ok(Self::OfAvailableMemory(p / 100.0));
        }
        let split = t
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(t.len());
        let (number, unit) = t.split_at(split);
        let n: f64 = number
            .parse()
            .map_err(|_| format!("`{text}` is not a size (use e.g. 64MiB, 1GB or 10%)"))?;
        let scale: u64 = match unit.trim() {
            "" | "B" => 1,
            "KB" | "kB" => 1_000,
            "MB" => 1_000_000,
            "GB" => 1_000_000_000,
            "KiB" | "K" | "k" => 1 << 10,
            "MiB" | "M" => 1 << 20,
            "GiB" | "G" => 1 << 30,
            "TB" => 1_000_000_000_000,
            "TiB" | "T" => 1 << 40,
            other => {
                return Err(format!(
                "`{text}`: unknown unit `{other}` (use B, KiB, MiB, GiB, TiB, KB, MB, GB, TB or %)"
            ))
            }
        };
        let bytes = n * scale as f64;
        if bytes < 1.0 {
            return Err(format!("`{text}` is less than one byte"));
        }
        // The caller checks its own range; this only keeps the conversion exact.
        if bytes >= u64::MAX as f64 {
            return Err(format!(
                "`{text}` is too large: a size must be below 16 EiB"
            ));
        }
        Ok(Self::Bytes(bytes as u64))
    }

    /// Bytes, given the memory available now (`None` when it could not be read).
    pub fn resolve(self, available: Option<u64>) -> Option<u64> {
        match self {
            Self::Bytes(b) => Some(b),
            Self::OfAvailableMemory(f) => available.map(|a| (a as f64 * f) as u64),
        }
    }
}

impl std::fmt::Display for Limit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Bytes(b) => write!(f, "{b} bytes"),
            Self::OfAvailableMemory(x) => write!(f, "{}% of available memory", x * 100.0),
        }
    }
}

/// Memory this process tree may still use: the cgroup v2 limit minus current usage when a
/// limit is set, else `MemAvailable` from `/proc/meminfo`.
pub fn available_memory() -> Option<u64> {
    let cgroup = std::fs::read_to_string("/proc/self/cgroup").ok();
    if let Some(rel) = cgroup.as_deref().and_then(cgroup_v2_path) {
        let dir = Path::new("/sys/fs/cgroup").join(rel.trim_start_matches('/'));
        let max = std::fs::read_to_string(dir.join("memory.max")).ok();
        let current = std::fs::read_to_string(dir.join("memory.current")).ok();
        if let Some(free) = cgroup_headroom(max.as_deref(), current.as_deref()) {
            return Some(free);
        }
    }
    mem_available(&std::fs::read_to_string("/proc/meminfo").ok()?)
}

/// The cgroup v2 path from `/proc/self/cgroup` (the `0::/path` line).
pub fn cgroup_v2_path(text: &str) -> Option<&str> {
    text.lines().find_map(|l| l.strip_prefix("0::"))
}

/// `memory.max - memory.current`, or `None` when there is no limit (`max`).
pub fn cgroup_headroom(max: Option<&str>, current: Option<&str>) -> Option<u64> {
    let max: u64 = max?.trim().parse().ok()?; // "max" → no limit
    let current: u64 = current?.trim().parse().ok()?;
    Some(max.saturating_sub(current))
}

/// `MemAvailable` in bytes from `/proc/meminfo` text.
pub fn mem_available(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sizes_and_fractions() {
        assert_eq!(Limit::parse("64MiB"), Ok(Limit::Bytes(64 << 20)));
        assert_eq!(Limit::parse("1.5GiB"), Ok(Limit::Bytes(3 << 29)));
        assert_eq!(Limit::parse("100MB"), Ok(Limit::Bytes(100_000_000)));
        assert_eq!(Limit::parse("4096"), Ok(Limit::Bytes(4096)));
        assert_eq!(Limit::parse("10%"), Ok(Limit::OfAvailableMemory(0.1)));
        assert!(Limit::parse("64 parsecs")
            .unwrap_err()
            .contains("unknown unit"));
        assert!(Limit::parse("0%").is_err());
        assert_eq!(Limit::parse("2TiB"), Ok(Limit::Bytes(2 << 40)));
        assert!(Limit::parse("0.5")
            .unwrap_err()
            .contains("less than one byte"));
        let huge = Limit::parse("30000000000GiB").unwrap_err();
        assert!(huge.contains("too large"), "{huge}");
        assert!(Limit::parse("lots").is_err());
        assert_eq!(Limit::OfAvailableMemory(0.25).resolve(Some(400)), Some(100));
        assert_eq!(Limit::OfAvailableMemory(0.25).resolve(None), None);
    }

    #[test]
    fn reads_cgroup_and_meminfo() {
        assert_eq!(
            cgroup_v2_path("12:cpu:/x\n0::/system.slice/app.service\n"),
            Some("/system.slice/app.service")
        );
        assert_eq!(
            cgroup_headroom(Some("1073741824\n"), Some("73741824\n")),
            Some(1_000_000_000)
        );
        assert_eq!(cgroup_headroom(Some("max\n"), Some("5\n")), None);
        assert_eq!(
            mem_available("MemTotal: 10 kB\nMemAvailable:    2048 kB\n"),
            Some(2 << 20)
        );
    }
}
