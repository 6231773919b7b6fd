//! Statistics for the benchmarks' paired runs.

/// A distribution-free 95 % confidence interval of the median of `v` (order statistics:
/// the k-th smallest and largest, k the largest with P(Binomial(n, ½) < k) ≤ 2.5 %); the
/// whole range when `v` is too short for one.
pub fn median_interval(v: &[f64]) -> (f64, f64) {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let n = s.len();
    if n == 0 {
        return (f64::NAN, f64::NAN);
    }
    // P(X <= j) for X ~ Binomial(n, 1/2), by the running binomial coefficient.
    let mut cdf = 0.0;
    let mut coef = 1.0f64;
    let mut k = 0;
    for j in 0..n {
        cdf += coef * 0.5f64.powi(n as i32);
        coef = coef * (n - j) as f64 / (j + 1) as f64;
        if cdf > 0.025 {
            break;
        }
        k = j + 1;
    }
    if k == 0 {
        return (s[0], s[n - 1]);
    }
    (s[k - 1], s[n - k])
}
