//! Median and quartiles of a handful of samples.

pub struct Summary {
    pub median: f64,
    pub p25: f64,
    pub p75: f64,
}

impl Summary {
    /// Quantiles with linear interpolation between order statistics (numpy's default).
    pub fn of(samples: &[f64]) -> Self {
        let mut v = samples.to_vec();
        v.sort_by(f64::total_cmp);
        Self {
            median: quantile(&v, 0.5),
            p25: quantile(&v, 0.25),
            p75: quantile(&v, 0.75),
        }
    }
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    match sorted.len() {
        0 => f64::NAN,
        1 => sorted[0],
        n => {
            let pos = q * (n - 1) as f64;
            let lo = pos.floor() as usize;
            let hi = (lo + 1).min(n - 1);
            sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Summary;

    #[test]
    fn quartiles_interpolate() {
        let s = Summary::of(&[4.0, 1.0, 3.0, 2.0, 5.0]);
        assert_eq!((s.median, s.p25, s.p75), (3.0, 2.0, 4.0));
        let s = Summary::of(&[1.0, 2.0]);
        assert_eq!(s.median, 1.5);
    }
}
